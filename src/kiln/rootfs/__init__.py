"""A root filesystem seen from inside: paths resolved as the image sees them, users and groups from its own files."""
