// Package configref writes the configuration reference, docs/configuration.md, from what the programs
// parse: their flag sets, and the environment variables they read without a flag. Each program's test
// renders its section and fails when the page differs, so the page cannot drift from the code.
package configref

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Env is an environment variable a program reads without a flag: secrets, kept off the command line where
// every user of ps would see them, and variables that libraries read.
type Env struct {
	Name  string
	Usage string
}

// Reference is one program's section of the page.
type Reference struct {
	// Program is the binary's name; it also marks the program's section in the page.
	Program string
	// Summary introduces the section.
	Summary string
	// Flags is the flag set the program parses. A flag with an environment variable names it in its usage
	// as "(ORRERY_NAME" (as the -h output shows it).
	Flags *flag.FlagSet
	// Env lists the variables without a flag.
	Env []Env
}

var envInUsage = regexp.MustCompile(`\((ORRERY_[A-Z0-9_]+)(=[a-z]+)?(; )?`)

// Variables returns every environment variable the reference documents.
func (r Reference) Variables() map[string]bool {
	vars := map[string]bool{}
	r.Flags.VisitAll(func(f *flag.Flag) {
		if m := envInUsage.FindStringSubmatch(f.Usage); m != nil {
			vars[m[1]] = true
		}
	})
	for _, e := range r.Env {
		vars[e.Name] = true
	}
	return vars
}

// Markdown renders the program's section: a table of its flags, then one of its other variables.
func (r Reference) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n%s\n\n", r.Program, r.Summary)
	b.WriteString("| flag | environment variable | default | meaning |\n|---|---|---|---|\n")
	r.Flags.VisitAll(func(f *flag.Flag) {
		env, usage := "", f.Usage
		if m := envInUsage.FindStringSubmatchIndex(f.Usage); m != nil {
			nameEnd := m[3]
			if m[5] >= 0 { // a boolean's "=true"
				nameEnd = m[5]
			}
			env = "`" + f.Usage[m[2]:nameEnd] + "`"
			// The variable has a column of its own: keep what the parenthesis says besides its name.
			usage = strings.TrimSpace(f.Usage[:m[0]])
			if rest := strings.TrimSuffix(f.Usage[m[1]:], ")"); rest != "" {
				usage += " (" + rest + ")"
			}
		}
		def := f.DefValue
		switch def {
		case "", "0", "0s", "false", "[]":
			def = ""
			// A default that depends on other settings is described in the usage instead.
			if i := strings.LastIndex(usage, " (default"); i >= 0 && strings.HasSuffix(usage, ")") {
				def = strings.TrimLeft(strings.TrimSuffix(usage[i+len(" (default"):], ")"), ": ")
				usage = usage[:i]
			}
		default:
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `-%s` | %s | %s | %s |\n", f.Name, env, def, cell(usage))
	})
	if len(r.Env) > 0 {
		b.WriteString("\nRead from the environment only:\n\n| environment variable | meaning |\n|---|---|\n")
		for _, e := range r.Env {
			fmt.Fprintf(&b, "| `%s` | %s |\n", e.Name, cell(e.Usage))
		}
	}
	return b.String()
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// Splice returns page with the program's section replaced by section. The section lies between the
// markers <!-- begin PROGRAM --> and <!-- end PROGRAM -->, which must be there already.
func Splice(page, program, section string) (string, error) {
	begin, end := "<!-- begin "+program+" -->\n", "<!-- end "+program+" -->"
	i := strings.Index(page, begin)
	j := strings.Index(page, end)
	if i < 0 || j < i {
		return "", errors.New("the page has no section for " + program + ": add the lines " +
			strings.TrimSpace(begin) + " and " + end)
	}
	return page[:i+len(begin)] + section + page[j:], nil
}

// variableName is how the programs name their environment variables.
var variableName = regexp.MustCompile(`\bORRERY_[A-Z0-9_]*[A-Z0-9]\b`)

// Check compares the program's section of the page at pagePath with what r renders, and with update
// rewrites it instead. Every ORRERY_ variable named in sources, the files that read the program's
// configuration, must be documented: a variable read without a flag or an entry in r.Env fails.
func Check(r Reference, pagePath string, update bool, sources ...string) error {
	documented := r.Variables()
	var undocumented []string
	for _, path := range sources {
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, name := range variableName.FindAllString(string(src), -1) {
			if !documented[name] && !slices.Contains(undocumented, name) {
				undocumented = append(undocumented, name)
			}
		}
	}
	if len(undocumented) > 0 {
		return fmt.Errorf("%s reads %v without documenting them: name the variable in its flag's usage as (NAME), "+
			"or list it with the variables read from the environment only", r.Program, undocumented)
	}
	page, err := os.ReadFile(pagePath)
	if err != nil {
		return err
	}
	want, err := Splice(string(page), r.Program, r.Markdown())
	if err != nil {
		return err
	}
	if update {
		return os.WriteFile(pagePath, []byte(want), 0o644)
	}
	if want != string(page) {
		return fmt.Errorf("%s's section of %s is stale: run `go tool task generate` and commit the result", r.Program, pagePath)
	}
	return nil
}
