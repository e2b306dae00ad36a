package main

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

// maxConfigSize caps the YAML configuration file.
const maxConfigSize = 1 << 20

// applyConfigFile reads the YAML file named by --config and sets every flag
// it names that was not given on the command line or in the environment
// (flags win over env, env over file). Keys are the long flag names.
func applyConfigFile(c *cli.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return usagef("config: %v", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return usagef("config %s: %v", path, err)
	}
	if len(data) > maxConfigSize {
		return usagef("config %s: larger than %d bytes", path, maxConfigSize)
	}
	return applyConfig(c, path, data)
}

func applyConfig(c *cli.Context, path string, data []byte) error {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if err == io.EOF {
			return nil // empty file
		}
		return usagef("config %s: %v", path, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return usagef("config %s:%d: want a mapping of option: value", path, root.Line)
	}
	known := map[string]cli.Flag{}
	for _, fl := range c.Command.Flags {
		for _, n := range fl.Names() {
			known[n] = fl
		}
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		name := k.Value
		fl, ok := known[name]
		if !ok || name == "config" || name == "check-config" {
			return usagef("config %s:%d: unknown option %q", path, k.Line, name)
		}
		if c.IsSet(name) {
			continue // flag or environment wins
		}
		var vals []string
		switch v.Kind {
		case yaml.ScalarNode:
			vals = []string{v.Value}
		case yaml.SequenceNode:
			if _, multi := fl.(*cli.StringSliceFlag); !multi {
				return usagef("config %s:%d: option %q takes one value, not a list", path, v.Line, name)
			}
			for _, e := range v.Content {
				if e.Kind != yaml.ScalarNode {
					return usagef("config %s:%d: option %q: list items must be plain values", path, e.Line, name)
				}
				vals = append(vals, e.Value)
			}
		default:
			return usagef("config %s:%d: option %q: want a value or a list", path, v.Line, name)
		}
		for _, val := range vals {
			if err := c.Set(name, val); err != nil {
				return usagef("config %s:%d: option %q: %q: %s", path, v.Line, name, val, badValue(c.Command.Flags, name, err.Error()))
			}
		}
	}
	return nil
}

// describeFlags lists the config keys for error messages and docs.
func describeFlags(flags []cli.Flag) string {
	var names []string
	for _, f := range flags {
		names = append(names, f.Names()[0])
	}
	return fmt.Sprint(names)
}
