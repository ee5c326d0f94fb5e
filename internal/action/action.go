// Package action reads and copies the action of a satellite command: the field set in the oneof named
// "action" of orrery.satellite.v1.Command, and of requests that carry an action under the same field names,
// such as orrery.admin.v1.EnqueueCommandRequest. Control plane and satellites name actions the same way
// through it: "configure", "restart", "revoke_tokens".
package action

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// oneofName is the name of the oneof that holds a command's action.
const oneofName = "action"

// field returns the field set in m's action oneof, or nil.
func field(m protoreflect.Message) protoreflect.FieldDescriptor {
	oneof := m.Descriptor().Oneofs().ByName(oneofName)
	if oneof == nil {
		return nil
	}
	return m.WhichOneof(oneof)
}

// Name is the name of the action m carries, or "" when it carries none.
func Name(m proto.Message) string {
	if f := field(m.ProtoReflect()); f != nil {
		return string(f.Name())
	}
	return ""
}

// Copy sets dst's action to src's, through the field of the same name, and reports whether it could: false
// when src carries no action or dst has no action field of that name and type.
func Copy(dst, src proto.Message) bool {
	from, to := src.ProtoReflect(), dst.ProtoReflect()
	f := field(from)
	if f == nil {
		return false
	}
	target := to.Descriptor().Fields().ByName(f.Name())
	if target == nil || target.ContainingOneof() == nil || target.ContainingOneof().Name() != oneofName ||
		target.Message() == nil || f.Message() == nil || target.Message().FullName() != f.Message().FullName() {
		return false
	}
	to.Set(target, from.Get(f))
	return true
}
