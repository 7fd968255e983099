package config

import (
	"reflect"
	"time"

	"github.com/spf13/pflag"

	"github.com/agentq/agentq/jobs"
)

// durationFlag is a pflag.Value that reads a duration with
// jobs.ParseDuration, days included (3d, 1d12h). Its String is Go's
// syntax, so that pflag's GetDuration and Load read it back.
type durationFlag struct{ p *time.Duration }

func (v durationFlag) Set(s string) error {
	d, err := jobs.ParseDuration(s)
	if err != nil {
		return err
	}
	*v.p = d
	return nil
}

func (v durationFlag) String() string {
	if v.p == nil {
		return "0s"
	}
	return v.p.String()
}

func (v durationFlag) Type() string { return "duration" }

var durationPtrType = reflect.TypeFor[*time.Duration]()

// AcceptDays makes every duration flag of fs (pflag's Duration and
// DurationVar) read its value with jobs.ParseDuration, so that a flag
// takes days as the configuration does: --since 3d, --timeout 1d12h. The
// flag keeps its variable, default and help; call it once the flags are
// defined and before they are parsed.
func AcceptDays(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if _, done := f.Value.(durationFlag); done || f.Value.Type() != "duration" {
			return
		}
		// pflag's duration value is a *time.Duration under another name.
		v := reflect.ValueOf(f.Value)
		if v.Kind() != reflect.Pointer || !v.Type().ConvertibleTo(durationPtrType) {
			return
		}
		f.Value = durationFlag{p: v.Convert(durationPtrType).Interface().(*time.Duration)}
	})
}
