package build

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// ErrUnsafeArchive is the error of an archive that is refused: an entry that would land outside the tree,
// a link out of it, a device file, or more files or bytes than the limits allow.
var ErrUnsafeArchive = errors.New("unsafe archive")

// Limits bound what unpacking an archive may cost.
type Limits struct {
	// Files is the most entries (files, directories and links) an archive may hold.
	Files int
	// Bytes is the most bytes its files may hold together, once decompressed.
	Bytes int64
}

// unpack extracts the archive in file (gzip-compressed tar, tar or zip, told by its first bytes) into
// dir, which must exist and be empty. Every write goes through an os.Root on dir, so no entry, however
// named, and no link made by an earlier entry can make it write outside dir; on top of that, entries with
// absolute paths or ".." are refused outright, as are device files, FIFOs and links whose target leaves
// the tree. Sizes are counted as bytes are written, not as headers claim.
func unpack(file *os.File, dir string, lim Limits) error {
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		return err
	}
	head := make([]byte, 512)
	n, _ := io.ReadFull(file, head)
	head = head[:n]
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	x := &extractor{root: root, lim: lim}
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bufio.NewReader(file))
		if err != nil {
			return fmt.Errorf("%w: gzip: %v", ErrUnsafeArchive, err)
		}
		defer zr.Close()
		err = x.tar(tar.NewReader(zr))
		if err != nil {
			return err
		}
	case bytes.HasPrefix(head, []byte("PK\x03\x04")) || bytes.HasPrefix(head, []byte("PK\x05\x06")):
		info, err := file.Stat()
		if err != nil {
			return err
		}
		zr, err := zip.NewReader(file, info.Size())
		if err != nil {
			return fmt.Errorf("%w: zip: %v", ErrUnsafeArchive, err)
		}
		if err := x.zip(zr); err != nil {
			return err
		}
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		if err := x.tar(tar.NewReader(file)); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: not a tar, tar.gz or zip archive", ErrUnsafeArchive)
	}
	return x.checkLinks()
}

type extractor struct {
	root  *os.Root
	lim   Limits
	files int
	bytes int64
	links []string // symbolic links made, checked once every entry is out
}

// name checks an entry's name and returns it cleaned, relative to the tree; "" for the tree itself.
func (x *extractor) name(raw string) (string, error) {
	x.files++
	if x.files > x.lim.Files {
		return "", fmt.Errorf("%w: more than %d entries", ErrUnsafeArchive, x.lim.Files)
	}
	if raw == "" || len(raw) > 4096 || strings.ContainsRune(raw, 0) || strings.Contains(raw, `\`) {
		return "", fmt.Errorf("%w: entry name %q", ErrUnsafeArchive, cut(raw))
	}
	if strings.HasPrefix(raw, "/") {
		return "", fmt.Errorf("%w: absolute path %q", ErrUnsafeArchive, cut(raw))
	}
	for _, el := range strings.Split(raw, "/") {
		if el == ".." {
			return "", fmt.Errorf("%w: path %q leaves the tree", ErrUnsafeArchive, cut(raw))
		}
	}
	clean := path.Clean(raw)
	if clean == "." {
		return "", nil
	}
	return clean, nil
}

func (x *extractor) tar(tr *tar.Reader) error {
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: tar: %v", ErrUnsafeArchive, err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue // GitHub's archives start with one, carrying the commit id
		}
		name, err := x.name(h.Name)
		if err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = x.dir(name)
		case tar.TypeReg: // the reader reports old-style regular files (TypeRegA) as TypeReg
			err = x.file(name, h.FileInfo().Mode(), tr)
		case tar.TypeSymlink:
			err = x.symlink(name, h.Linkname)
		case tar.TypeLink:
			err = x.hardlink(name, h.Linkname)
		default:
			return fmt.Errorf("%w: %q is a device, FIFO or other special file", ErrUnsafeArchive, cut(h.Name))
		}
		if err != nil {
			return err
		}
	}
}

func (x *extractor) zip(zr *zip.Reader) error {
	if len(zr.File) > x.lim.Files {
		return fmt.Errorf("%w: more than %d entries", ErrUnsafeArchive, x.lim.Files)
	}
	for _, f := range zr.File {
		name, err := x.name(f.Name)
		if err != nil {
			return err
		}
		mode := f.Mode()
		switch {
		case mode.IsDir():
			err = x.dir(name)
		case mode&fs.ModeSymlink != 0:
			var target []byte
			target, err = readSmall(f)
			if err == nil {
				err = x.symlink(name, string(target))
			}
		case mode.IsRegular():
			var rc io.ReadCloser
			rc, err = f.Open()
			if err == nil {
				err = x.file(name, mode, rc)
				_ = rc.Close()
			}
		default:
			return fmt.Errorf("%w: %q is a device, FIFO or other special file", ErrUnsafeArchive, cut(f.Name))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func readSmall(f *zip.File) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 4097))
	if err != nil {
		return nil, err
	}
	if len(b) > 4096 {
		return nil, fmt.Errorf("%w: link target of %q too long", ErrUnsafeArchive, cut(f.Name))
	}
	return b, nil
}

func (x *extractor) dir(name string) error {
	if name == "" {
		return nil
	}
	return x.wrap(x.root.MkdirAll(name, 0o755))
}

func (x *extractor) parent(name string) error {
	if d := path.Dir(name); d != "." {
		return x.wrap(x.root.MkdirAll(d, 0o755))
	}
	return nil
}

func (x *extractor) file(name string, mode fs.FileMode, r io.Reader) error {
	if name == "" {
		return fmt.Errorf("%w: a file named like the tree", ErrUnsafeArchive)
	}
	if err := x.parent(name); err != nil {
		return err
	}
	perm := fs.FileMode(0o644)
	if mode&0o111 != 0 {
		perm = 0o755
	}
	// O_EXCL: an entry never overwrites an earlier one, nor writes through a link an earlier one made.
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return x.wrap(err)
	}
	budget := x.lim.Bytes - x.bytes
	n, err := io.Copy(f, io.LimitReader(r, budget+1))
	x.bytes += n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrUnsafeArchive, cut(name), err)
	}
	if n > budget {
		return fmt.Errorf("%w: more than %d bytes unpacked", ErrUnsafeArchive, x.lim.Bytes)
	}
	return nil
}

// symlink makes a link whose target, read from where the link is, stays in the tree.
func (x *extractor) symlink(name, target string) error {
	if name == "" || target == "" || strings.HasPrefix(target, "/") || strings.ContainsRune(target, 0) {
		return fmt.Errorf("%w: link %q points out of the tree", ErrUnsafeArchive, cut(name))
	}
	if escapes(path.Join(path.Dir(name), target)) {
		return fmt.Errorf("%w: link %q points out of the tree", ErrUnsafeArchive, cut(name))
	}
	if err := x.parent(name); err != nil {
		return err
	}
	if err := x.root.Symlink(target, name); err != nil {
		return x.wrap(err)
	}
	x.links = append(x.links, name)
	return nil
}

func (x *extractor) hardlink(name, target string) error {
	t, err := x.name(target)
	x.files-- // the target was counted as its own entry
	if err != nil || t == "" || name == "" {
		return fmt.Errorf("%w: hard link %q points out of the tree", ErrUnsafeArchive, cut(name))
	}
	if err := x.parent(name); err != nil {
		return err
	}
	return x.wrap(x.root.Link(t, name))
}

// checkLinks resolves every symbolic link as the kernel would, through os.Root, which refuses a path
// that leaves it: one link pointing at ".." and another going through it each look harmless alone.
func (x *extractor) checkLinks() error {
	for _, l := range x.links {
		if _, err := x.root.Stat(l); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: link %q points out of the tree", ErrUnsafeArchive, cut(l))
		}
	}
	return nil
}

// wrap marks the errors of writes os.Root refused as unsafe.
func (x *extractor) wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %v", ErrUnsafeArchive, err)
}

// escapes reports whether a cleaned relative path climbs out of its root.
func escapes(p string) bool {
	p = path.Clean(p)
	return p == ".." || strings.HasPrefix(p, "../") || strings.HasPrefix(p, "/")
}

// cut shortens an archive's entry name for an error message.
func cut(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
