package mcpruntime

// ModernLane describes the process of an instance's modern lane.
type ModernLane struct {
	Pid    int
	Exited <-chan struct{} // closed once the process has exited and been reaped
	Ended  <-chan struct{} // closed once the runtime saw the lane end on its own
}

// ModernLaneOf returns the process of instance id's modern lane, and false when none runs.
func (r *Runtime) ModernLaneOf(id string) (ModernLane, bool) {
	in, ok := r.lookup(id)
	if !ok {
		return ModernLane{}, false
	}
	in.mu.Lock()
	c := in.live
	in.mu.Unlock()
	if c == nil {
		return ModernLane{}, false
	}
	c.modern.mu.Lock()
	defer c.modern.mu.Unlock()
	m := c.modern.conn
	if m == nil || m.proc == nil {
		return ModernLane{}, false
	}
	return ModernLane{Pid: m.proc.Pid(), Exited: m.proc.Done(), Ended: m.done}, true
}
