package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// show prints msg as JSON or YAML, or as a table of headers and rows.
func (a *App) show(msg proto.Message, headers []string, rows [][]string) error {
	switch a.output {
	case "json", "yaml":
		return writeStructured(a.Out, a.output, msg)
	}
	return writeTable(a.Out, headers, rows)
}

func writeStructured(w io.Writer, format string, msg proto.Message) error {
	raw, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}.Marshal(msg)
	if err != nil {
		return err
	}
	if format == "json" {
		_, err = fmt.Fprintf(w, "%s\n", raw)
		return err
	}
	return writeYAML(w, raw)
}

// writeYAML turns JSON into block-style YAML, keeping the order of the fields.
func writeYAML(w io.Writer, jsonDoc []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(jsonDoc, &doc); err != nil {
		return err
	}
	var blockStyle func(n *yaml.Node)
	blockStyle = func(n *yaml.Node) {
		n.Style &^= yaml.FlowStyle
		if n.Kind == yaml.ScalarNode && n.Style&yaml.DoubleQuotedStyle != 0 {
			n.Style &^= yaml.DoubleQuotedStyle // quoted again only where YAML needs it
		}
		for _, c := range n.Content {
			blockStyle(c)
		}
	}
	blockStyle(&doc)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	return enc.Close()
}

func writeTable(w io.Writer, headers []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	for _, r := range rows {
		for i := range r {
			r[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(r[i])
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// printJSONLine writes one JSON value per line, for followed streams in -o json.
func printJSONLine(w io.Writer, msg proto.Message) error {
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(msg)
	if err != nil {
		return err
	}
	var compact json.RawMessage = raw
	_, err = fmt.Fprintf(w, "%s\n", compact)
	return err
}

func when(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().Local().Format(time.DateTime)
}

func ago(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	d := time.Since(ts.AsTime()).Round(time.Second)
	switch {
	case d < time.Minute:
		return d.String() + " ago"
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// enumName shortens an enum's name to its last part, lower case: INSTANCE_STATUS_ONLINE → online.
func enumName(full, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(full, prefix))
}
