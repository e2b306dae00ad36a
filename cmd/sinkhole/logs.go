package main

// reopenLogs makes the audit and query logs reopen their files (logrotate
// sends SIGHUP or SIGUSR1 after moving them away).
func (in *instance) reopenLogs() {
	if in.obs.audit != nil {
		in.obs.audit.Reopen()
	}
	if in.obs.queries != nil {
		in.obs.queries.Reopen()
	}
}
