package cli

import (
	"github.com/spf13/cobra"
)

func (m *Main) benchCommand(rf *rootFlags) *cobra.Command {
	return &cobra.Command{Use: "bench", Hidden: true}
}
