package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// The SDK writes the answer to initialize from its own ServerCapabilities, which has no tasks field, so
// an initialize answer is held back and given capabilities.tasks on its way out when the user's servers
// take tasks: clients that check before they ask for a task (the TypeScript SDK with strict
// capabilities) then find the capability.

// maxAdvertisedBody bounds the initialize answer held back; a larger one passes unchanged.
const maxAdvertisedBody = 256 << 10

// userTaskCapability is capabilities.tasks for the user's online instances: each part that one of them
// declares, or nil when none takes tasks.
func (g *Gateway) userTaskCapability(us *userServer) json.RawMessage {
	online, _ := us.instances()
	var found, list, cancel, call bool
	for _, inst := range online {
		c, ok := g.taskCapability(inst.ID)
		if !ok {
			continue
		}
		found = true
		list = list || c.List != nil
		cancel = cancel || c.Cancel != nil
		call = call || c.Requests.Tools.Call != nil
	}
	if !found {
		return nil
	}
	out := map[string]any{}
	if list {
		out["list"] = struct{}{}
	}
	if cancel {
		out["cancel"] = struct{}{}
	}
	if call {
		out["requests"] = map[string]any{"tools": map[string]any{"call": struct{}{}}}
	}
	return mustJSON(out)
}

// initializeWriter holds back an initialize answer so that finish can add capabilities.tasks, or a
// server/discover answer so that finish can add the tasks extension (edit).
type initializeWriter struct {
	http.ResponseWriter
	status   int
	body     bytes.Buffer
	overflow bool
	// edit, when set, changes the capabilities of the held answer instead of adding capabilities.tasks.
	edit func(capabilities map[string]json.RawMessage)
}

func (w *initializeWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *initializeWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.overflow || w.body.Len()+len(p) > maxAdvertisedBody {
		if !w.overflow {
			w.overflow = true
			w.ResponseWriter.WriteHeader(w.status)
			if _, err := w.ResponseWriter.Write(w.body.Bytes()); err != nil {
				return 0, err
			}
		}
		return w.ResponseWriter.Write(p)
	}
	return w.body.Write(p)
}

// Flush holds the answer back: finish sends it.
func (w *initializeWriter) Flush() {}

// finish sends the held answer, with caps as capabilities.tasks of its result.
func (w *initializeWriter) finish(caps json.RawMessage) {
	if w.overflow || w.status == 0 {
		return
	}
	body := w.body.Bytes()
	switch {
	case w.status != http.StatusOK:
	case w.edit != nil:
		body = withCapabilities(body, w.edit)
	default:
		body = withTaskCapability(body, caps)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.ResponseWriter.WriteHeader(w.status)
	_, _ = w.ResponseWriter.Write(body)
}

// withTaskCapability adds caps to the capabilities of the initialize result in body, a JSON-RPC response
// or a stream of server-sent events carrying one; anything else comes back unchanged.
func withTaskCapability(body []byte, caps json.RawMessage) []byte {
	return withCapabilities(body, func(capabilities map[string]json.RawMessage) { capabilities["tasks"] = caps })
}

// withTasksExtension adds the tasks extension to the capabilities of the server/discover result in body,
// and takes the experimental form's capabilities.tasks out, which the extension replaces.
func withTasksExtension(body []byte) []byte {
	return withCapabilities(body, addTasksExtension)
}

func addTasksExtension(capabilities map[string]json.RawMessage) {
	var ext map[string]json.RawMessage
	if json.Unmarshal(capabilities["extensions"], &ext) != nil || ext == nil {
		ext = map[string]json.RawMessage{}
	}
	ext[extensionTasks] = json.RawMessage(`{}`)
	capabilities["extensions"] = mustJSON(ext)
	delete(capabilities, "tasks")
}

// withCapabilities applies edit to the capabilities of the result in body, a JSON-RPC response or a
// stream of server-sent events carrying one; anything else comes back unchanged.
func withCapabilities(body []byte, edit func(map[string]json.RawMessage)) []byte {
	if out, ok := editCapabilities(body, edit); ok {
		return out
	}
	lines := strings.Split(string(body), "\n")
	for i, line := range lines {
		data, isData := strings.CutPrefix(line, "data: ")
		if !isData {
			continue
		}
		if out, ok := editCapabilities([]byte(data), edit); ok {
			lines[i] = "data: " + string(out)
		}
	}
	return []byte(strings.Join(lines, "\n"))
}

func editCapabilities(msg []byte, edit func(map[string]json.RawMessage)) ([]byte, bool) {
	var resp map[string]json.RawMessage
	if json.Unmarshal(msg, &resp) != nil || resp["result"] == nil {
		return nil, false
	}
	var result map[string]json.RawMessage
	var capabilities map[string]json.RawMessage
	if json.Unmarshal(resp["result"], &result) != nil || json.Unmarshal(result["capabilities"], &capabilities) != nil ||
		capabilities == nil {
		return nil, false
	}
	edit(capabilities)
	result["capabilities"] = mustJSON(capabilities)
	resp["result"] = mustJSON(result)
	return mustJSON(resp), true
}
