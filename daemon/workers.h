/* crierd's supervisor for "workers" > 1: one event loop per core, each in a
 * process of its own running this same binary, started, restarted and stopped
 * by the first process, which does no Redis or provider work itself. */
#ifndef CR_WORKERS_H
#define CR_WORKERS_H

/* Runs the supervisor until its workers are gone: starts n copies of this
 * executable as `EXE -c config_path -W I:PID` (I = 0..n-1, PID = this
 * process), sharing its stdout and stderr; restarts a worker that exits or is
 * killed while the supervisor is not stopping (after 1 s, doubling to 30 s
 * while it keeps dying within 10 s of starting); passes SIGTERM and SIGINT on
 * to every worker. Workers run in a session of their own, so a terminal's
 * Ctrl-C reaches them once, through the supervisor. Returns the exit code for
 * main: 0 when every worker stopped with 0 after a signal, 1 otherwise. */
int cr_workers_run(const char *config_path, int n);

/* Parses the -W argument "I:PID" into the worker index (0..n-1) and the
 * supervisor's pid. Returns 0, or CR_EINVAL for anything else. */
int cr_workers_parse_arg(const char *arg, int n, int *index, long *pid);

/* Ties this worker process to its supervisor: it is killed (SIGKILL) when the
 * supervisor dies, as when the supervisor itself crashed. Returns 0, or
 * CR_ECLOSED when the supervisor (supervisor_pid) is already gone. */
int cr_workers_bind(long supervisor_pid);

#endif
