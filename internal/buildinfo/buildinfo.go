// Package buildinfo tells which version of Orrery a binary is.
package buildinfo

import "runtime/debug"

// version is set at link time: -ldflags "-X github.com/orrery/orrery/internal/buildinfo.version=v1.2.3".
var version = ""

// Version is the link-time version, else the module version that go install recorded, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}
