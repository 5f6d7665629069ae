"""The shell around the dialog: settings, channels, staff tools, the command line."""
