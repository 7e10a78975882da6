"""Access: API keys for systems, treasurer accounts for people, the audit log, and the one
dependency every endpoint declares its scope with."""
