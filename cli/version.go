package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/agentq/agentq"
)

func (m *Main) versionCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version [--json]",
		Short: "Print agentq's version, commit and Go version",
		Long: `Print the version of agentq this program was built with: the module version
(a tag, or a pseudo-version for an untagged commit), the commit and its time,
whether the work tree had uncommitted changes, and the Go version. Release
builds set them with -ldflags -X github.com/agentq/agentq.version=... (and
.commit, .commitTime); the Dockerfile does from its VERSION, COMMIT and
COMMIT_TIME build arguments. --json always has every key: commit and
commit_time are "" when unknown. A Go program reads them with
agentq.Version().`,
		Example: `  agentq version
  agentq --version
  agentq version --json | jq -r .commit`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := agentq.Version()
			if asJSON {
				return writeJSON(m.Stdout, v)
			}
			_, err := fmt.Fprintf(m.Stdout, "%s %s\n", m.name(), v)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"version", "commit", "commit_time", "modified", "go_version"}`)
	return cmd
}
