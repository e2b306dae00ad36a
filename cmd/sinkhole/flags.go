package main

import (
	"reflect"
	"strings"

	"github.com/urfave/cli/v2"
)

// envVar is the environment variable for a flag: SINKHOLE_ and the flag
// name in upper case with dashes as underscores.
func envVar(flag string) []string {
	return []string{"SINKHOLE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))}
}

// withEnv gives every flag its SINKHOLE_ environment variable. Every
// urfave/cli flag type holds its variables in an EnvVars field; setting it
// by reflection covers every type, so a flag of a new type cannot be left
// without one (TestEveryFlagHasEnv checks).
func withEnv(flags []cli.Flag) []cli.Flag {
	for _, f := range flags {
		if v := reflect.ValueOf(f); v.Kind() == reflect.Pointer {
			if field := v.Elem().FieldByName("EnvVars"); field.IsValid() && field.CanSet() {
				field.Set(reflect.ValueOf(envVar(f.Names()[0])))
			}
		}
	}
	return flags
}
