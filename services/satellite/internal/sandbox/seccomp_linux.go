package sandbox

import (
	"encoding/binary"
	"fmt"
	"os"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// deniedSyscalls fail with EPERM in a sandbox. They are the kernel's attack surface that no MCP server
// needs: namespaces of its own (the way to capabilities, and so to most of the kernel's privileged code),
// tracing other processes, the kernel keyring, mounting, BPF and perf events, loading kernels and modules,
// and the host's clock, swap, accounting, reboot and ports. Names the running architecture does not have
// are left out.
var deniedSyscalls = []string{
	"unshare", "setns",
	"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
	"keyctl", "add_key", "request_key",
	"mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig",
	"fsmount", "fspick", "mount_setattr", "name_to_handle_at", "open_by_handle_at",
	"bpf", "perf_event_open", "userfaultfd", "lookup_dcookie",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "create_module",
	"reboot", "swapon", "swapoff", "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
	"syslog", "iopl", "ioperm", "quotactl", "quotactl_fd", "nfsservctl", "uselib", "vhangup",
}

// seccompProgram assembles the sandboxes' seccomp filter in the form bwrap's --seccomp reads: an array of
// struct sock_filter in the machine's byte order.
//
// Most calls are refused outright. clone is refused only with CLONE_NEWUSER in its flags, since every
// thread and process is made with it; clone3 passes its flags in memory a filter cannot read, so it
// fails with ENOSYS, which makes the C library fall back to clone. Calls of another architecture's ABI
// (a 64-bit process can make i386 calls, whose numbers differ) kill the process: the filter's numbers
// would not describe them.
func seccompProgram() ([]byte, error) {
	native, err := arch.GetInfo("")
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	var names []string
	for _, n := range deniedSyscalls {
		if _, ok := native.SyscallNames[n]; ok {
			names = append(names, n)
		}
	}
	groups := []seccomp.SyscallGroup{{Action: seccomp.ActionErrno, Names: names}}
	if _, ok := native.SyscallNames["clone"]; ok {
		// clone's flags are its first argument on every architecture but s390, which bwrap does not serve here.
		groups = append(groups, seccomp.SyscallGroup{Action: seccomp.ActionErrno, NamesWithCondtions: []seccomp.NameWithConditions{{
			Name:       "clone",
			Conditions: []seccomp.Condition{{Argument: 0, Operation: seccomp.BitsSet, Value: unix.CLONE_NEWUSER}},
		}}})
	}
	if _, ok := native.SyscallNames["clone3"]; ok {
		groups = append(groups, seccomp.SyscallGroup{
			Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS), Names: []string{"clone3"},
		})
	}
	policy := seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: groups}
	body, err := policy.Assemble()
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	// The library's program lets calls of a foreign architecture through to its default action (allow).
	prog := append([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(native.ID), SkipTrue: 1},
		bpf.RetConstant{Val: uint32(seccomp.ActionKillProcess)},
	}, body...)
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	out := make([]byte, 0, 8*len(raw))
	for _, ins := range raw {
		out = binary.NativeEndian.AppendUint16(out, ins.Op)
		out = append(out, ins.Jt, ins.Jf)
		out = binary.NativeEndian.AppendUint32(out, ins.K)
	}
	return out, nil
}

// dataFile returns the read end of a pipe that holds data, for a child to read through an inherited
// descriptor. data must fit the pipe's buffer (64 KiB on Linux), as filters and small files do.
func dataFile(data []byte) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	_, err = w.Write(data)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = r.Close()
		return nil, err
	}
	return r, nil
}
