package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// envVar is the environment variable for a flag: SINKHOLE_ and the flag
// name in upper case with dashes as underscores.
func envVar(flag string) []string {
	return []string{"SINKHOLE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))}
}

// withEnv gives every flag its SINKHOLE_ environment variable.
func withEnv(flags []cli.Flag) []cli.Flag {
	for _, f := range flags {
		name := f.Names()[0]
		switch v := f.(type) {
		case *cli.StringFlag:
			v.EnvVars = envVar(name)
		case *cli.StringSliceFlag:
			v.EnvVars = envVar(name)
		case *cli.DurationFlag:
			v.EnvVars = envVar(name)
		case *cli.IntFlag:
			v.EnvVars = envVar(name)
		case *cli.BoolFlag:
			v.EnvVars = envVar(name)
		case *cli.PathFlag:
			v.EnvVars = envVar(name)
		case *cli.Float64Flag:
			v.EnvVars = envVar(name)
		case *cli.Uint64Flag:
			v.EnvVars = envVar(name)
		}
	}
	return flags
}
