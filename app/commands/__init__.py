"""The `captioner` command and the work of each of its sub-commands."""
