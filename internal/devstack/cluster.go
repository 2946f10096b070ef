package devstack

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"kho/vault"
)

// The cluster profile (kho dev up --cluster) runs on one machine what a
// deployment spreads over several:
//
//   - MinIO distributed: 4 nodes of 2 drives each, one erasure set of 8
//     drives (4 data, 4 parity), so one node lost keeps reads and writes;
//   - Vault HA on integrated storage: 3 Raft nodes, initialised with 3
//     Shamir key shares (2 unseal), the shares kept in stack.json;
//   - PostgreSQL: the primary and a streaming replica (hot standby), which
//     khod reads from where a read may lag (the access log, audit search);
//   - fronts (`kho dev front`): one TCP round-robin front per service, on
//     the service's usual port, skipping nodes that are down, where a
//     deployment has its load balancer;
//   - khod: 3 replicas behind their own front (kho dev khod).
//
// Node ports follow the service's base port: MinIO nodes base+1..+4, Vault
// nodes base+1..+3 (cluster ports base+4..+6), the PostgreSQL replica
// base+1, khod replicas base+1..+3 (their metrics base+11..+13).
const (
	ClusterMinIONodes = 4
	ClusterMinIODrive = 2
	ClusterVaultNodes = 3
	ClusterKhods      = 3
	vaultShares       = 3
	vaultThreshold    = 2
)

// ClusterState is what a cluster stack adds to State.
type ClusterState struct {
	MinIONodes      []string `json:"minio_nodes"`       // host:port
	VaultNodes      []string `json:"vault_nodes"`       // http://host:port
	VaultUnsealKeys []string `json:"vault_unseal_keys"` // Shamir shares, dev only
	ReplicaURL      string   `json:"postgres_replica_url"`
	ReplicationPass string   `json:"postgres_replication_password"` // role kho_replication: REPLICATION, nothing else
	KhodNodes       []string `json:"khod_nodes"`                    // host:port
	KhodMetrics     []string `json:"khod_metrics"`
}

// MinIONodePID and VaultNodePID name the pid files of the cluster's nodes.
func (s *Stack) MinIONodePID(i int) PIDFile {
	return PIDFile{s.path("run", fmt.Sprintf("minio-%d.pid", i+1))}
}
func (s *Stack) VaultNodePID(i int) PIDFile {
	return PIDFile{s.path("run", fmt.Sprintf("vault-%d.pid", i+1))}
}
func (s *Stack) pgReplicaPID() PIDFile { return PIDFile{s.path("run", "postgres-replica.pid")} }

// frontPID is the pid file of the cluster's front for a service.
func (s *Stack) frontPID(service string) PIDFile {
	return PIDFile{s.path("run", service+"-front.pid")}
}

// KhodNodePID is the pid file of the cluster's khod replica i.
func (s *Stack) KhodNodePID(i int) PIDFile {
	return PIDFile{s.path("run", fmt.Sprintf("khod-%d.pid", i+1))}
}

func loopback(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// upCluster starts (or checks) every node and front of the cluster profile.
func (s *Stack) upCluster(ctx context.Context, st *State) error {
	if st.Cluster == nil {
		st.Cluster = &ClusterState{}
	}
	c := st.Cluster
	if url := s.Getenv("KHO_DATABASE_URL"); url != "" {
		return fmt.Errorf("the cluster profile runs its own PostgreSQL primary and replica; unset KHO_DATABASE_URL")
	}
	if err := s.upPostgres(ctx, st); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if err := s.upPostgresReplica(ctx, st); err != nil {
		return fmt.Errorf("postgres replica: %w", err)
	}
	if err := s.saveState(st); err != nil {
		return err
	}
	if err := s.upMinIOCluster(ctx, st); err != nil {
		return fmt.Errorf("minio: %w", err)
	}
	if err := s.saveState(st); err != nil {
		return err
	}
	if err := s.upVaultCluster(ctx, st); err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	c.KhodNodes, c.KhodMetrics = nil, nil
	for i := 0; i < ClusterKhods; i++ {
		c.KhodNodes = append(c.KhodNodes, loopback(s.Ports.Khod+1+i))
		c.KhodMetrics = append(c.KhodMetrics, loopback(s.Ports.Khod+11+i))
	}
	return s.saveState(st)
}

// upPostgresReplica makes a streaming replica of the primary (a base
// backup, once) and starts it as a hot standby.
func (s *Stack) upPostgresReplica(ctx context.Context, st *State) error {
	bindir, _ := postgresBinaries()
	cred, err := pgRunAs()
	if err != nil {
		return err
	}
	root := filepath.Join(filepath.Dir(s.pgRoot(cred)), "postgres-replica")
	data, sock := filepath.Join(root, "data"), filepath.Join(root, "run")
	port := s.Ports.Postgres + 1
	st.Cluster.ReplicaURL = pgURL(pgAppRole, passwordOf(st.DatabaseAppURL), port, pgDatabase)
	if pid, err := s.pgReplicaPID().Running(); err != nil {
		return err
	} else if pid != 0 {
		s.say("postgres replica already running (pid %d) on %s", pid, loopback(port))
		return nil
	}
	if !portFree(port) {
		return fmt.Errorf("port %d is taken by a process this stack did not start", port)
	}
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		if err := s.ensureReplicationRole(ctx, st); err != nil {
			return err
		}
		s.say("postgres replica: base backup of the primary into %s", data)
		for _, d := range []string{root, sock} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return err
			}
		}
		if err := chownTree(root, cred); err != nil {
			return err
		}
		// -R writes standby.signal and the primary's connection, so the
		// copy starts as a standby that streams from the primary.
		if err := s.runAs(ctx, cred, filepath.Join(bindir, "pg_basebackup"), []string{"PGPASSWORD=" + st.Cluster.ReplicationPass},
			"-D", data, "-h", "127.0.0.1", "-p", strconv.Itoa(s.Ports.Postgres), "-U", pgReplicationRole,
			"-R", "-X", "stream", "--checkpoint=fast"); err != nil {
			os.RemoveAll(data)
			return err
		}
	}
	logPath := s.path("logs", "postgres-replica.log")
	args := []string{"-D", data, "-p", strconv.Itoa(port), "-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + sock, "-c", "max_connections=300", "-c", "hot_standby=on"}
	pid, err := startDetached(s.pgReplicaPID(), filepath.Join(bindir, "postgres"), args, []string{"LANG=C.UTF-8", "PATH=/usr/bin:/bin"}, logPath, cred)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	s.say("postgres replica starting (pid %d) on %s", pid, loopback(port))
	return s.waitFor(ctx, "postgres replica", 60*time.Second, s.pgReplicaPID(), logPath, func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, st.Cluster.ReplicaURL)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		var standby bool
		if err := c.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&standby); err != nil {
			return err
		}
		if !standby {
			return fmt.Errorf("the replica is not in recovery")
		}
		return nil
	})
}

// pgReplicationRole is the role the replica streams as: REPLICATION and
// LOGIN, no access to kho's tables.
const pgReplicationRole = "kho_replication"

// ensureReplicationRole creates (or sets the password of) the replica's
// role on the primary.
func (s *Stack) ensureReplicationRole(ctx context.Context, st *State) error {
	if st.Cluster.ReplicationPass == "" {
		st.Cluster.ReplicationPass = secret(16)
		if err := s.saveState(st); err != nil {
			return err
		}
	}
	c, err := pgx.Connect(ctx, st.DatabaseAdminURL)
	if err != nil {
		return fmt.Errorf("connect as superuser: %w", err)
	}
	defer c.Close(ctx)
	var exists bool
	if err := c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, pgReplicationRole).Scan(&exists); err != nil {
		return err
	}
	verb := "ALTER"
	if !exists {
		verb = "CREATE"
	}
	_, err = c.Exec(ctx, fmt.Sprintf(`%s ROLE %s LOGIN REPLICATION PASSWORD %s`, verb, pgReplicationRole, quoteLiteral(st.Cluster.ReplicationPass)))
	return err
}

// runAs runs a tool to completion as cred, its output kept in a log named
// after it when it fails.
func (s *Stack) runAs(ctx context.Context, cred *syscall.Credential, bin string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Env = append([]string{"LANG=C.UTF-8", "PATH=/usr/bin:/bin"}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		logPath := s.path("logs", filepath.Base(bin)+".log")
		_ = os.WriteFile(logPath, out, 0o644)
		return logError(logPath, "%s failed: %v", filepath.Base(bin), err)
	}
	return nil
}

// upMinIOCluster starts the four MinIO nodes and their front on the MinIO
// port, then bootstraps the bucket and khod's user through the front.
func (s *Stack) upMinIOCluster(ctx context.Context, st *State) error {
	bin, err := s.minioBinary(ctx)
	if err != nil {
		return err
	}
	st.MinIOBinary = bin
	st.MinIOEndpoint = loopback(s.Ports.MinIO)
	st.MinIOBucket, st.MinIOAccessKey = minioBucket, minioKhodUser
	if st.MinIORootUser == "" {
		st.MinIORootUser, st.MinIORootPassword = "kho-root", secret(16)
	}
	if st.MinIOSecretKey == "" {
		st.MinIOSecretKey = secret(16)
	}
	c := st.Cluster
	c.MinIONodes = nil
	for i := 0; i < ClusterMinIONodes; i++ {
		c.MinIONodes = append(c.MinIONodes, loopback(s.Ports.MinIO+1+i))
	}
	// The nodes start with these credentials: keep them before they do.
	if err := s.saveState(st); err != nil {
		return err
	}
	for i := 0; i < ClusterMinIONodes; i++ {
		for j := 0; j < ClusterMinIODrive; j++ {
			if err := os.MkdirAll(s.path("minio", fmt.Sprintf("node%d", i+1), fmt.Sprintf("drive%d", j+1)), 0o700); err != nil {
				return err
			}
		}
	}
	for i := range c.MinIONodes {
		if err := s.StartMinIONode(st, i); err != nil {
			return err
		}
	}
	for i, addr := range c.MinIONodes {
		if err := s.waitFor(ctx, fmt.Sprintf("minio node %d", i+1), 90*time.Second, s.MinIONodePID(i), s.path("logs", fmt.Sprintf("minio-%d.log", i+1)), func(ctx context.Context) error {
			return MinIOReady(ctx, addr)
		}); err != nil {
			return err
		}
	}
	if err := s.startFront("minio", st.MinIOEndpoint, c.MinIONodes, "/minio/health/live"); err != nil {
		return err
	}
	s.say("minio: %d nodes × %d drives behind %s", ClusterMinIONodes, ClusterMinIODrive, st.MinIOEndpoint)
	return s.bootstrapMinIO(ctx, st)
}

// StartMinIONode starts node i of the cluster's MinIO unless it runs.
func (s *Stack) StartMinIONode(st *State, i int) error {
	pf := s.MinIONodePID(i)
	if pid, err := pf.Running(); err != nil || pid != 0 {
		return err
	}
	addr := st.Cluster.MinIONodes[i]
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	if !portFree(n) {
		return fmt.Errorf("port %d is taken by a process this stack did not start", n)
	}
	var drives []string
	for k, a := range st.Cluster.MinIONodes {
		for j := 0; j < ClusterMinIODrive; j++ {
			drives = append(drives, "http://"+a+s.path("minio", fmt.Sprintf("node%d", k+1), fmt.Sprintf("drive%d", j+1)))
		}
	}
	env := []string{
		"MINIO_ROOT_USER=" + st.MinIORootUser, "MINIO_ROOT_PASSWORD=" + st.MinIORootPassword,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "HOME=" + s.path("minio", fmt.Sprintf("node%d", i+1)), "PATH=/usr/bin:/bin",
		// All four nodes share one host: MinIO is told which endpoint is
		// its own, and that drives on the root file system are fine here
		// (it refuses them in a distributed set otherwise).
		"_MINIO_SERVER_LOCAL=" + addr, "MINIO_CI_CD=1",
	}
	args := append([]string{"server", "--quiet", "--address", addr}, drives...)
	pid, err := startDetached(pf, st.MinIOBinary, args, env, s.path("logs", fmt.Sprintf("minio-%d.log", i+1)), nil)
	if err != nil {
		return fmt.Errorf("start node %d: %w", i+1, err)
	}
	s.say("minio node %d starting (pid %d) on %s", i+1, pid, addr)
	return nil
}

// vaultNodeConfig is node i of the Raft cluster.
func (s *Stack) vaultNodeConfig(i int) string {
	api, cluster := s.Ports.Vault+1+i, s.Ports.Vault+1+ClusterVaultNodes+i
	var join strings.Builder
	for k := 0; k < ClusterVaultNodes; k++ {
		if k != i {
			fmt.Fprintf(&join, "  retry_join {\n    leader_api_addr = \"http://127.0.0.1:%d\"\n  }\n", s.Ports.Vault+1+k)
		}
	}
	return fmt.Sprintf(`storage "raft" {
  path    = %q
  node_id = "kho-vault-%d"
  # Elections in about a second (1 is Raft's fastest; 5, the default, suits
  # slow networks).
  performance_multiplier = 1
%s}
listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}
api_addr      = "http://127.0.0.1:%d"
cluster_addr  = "https://127.0.0.1:%d"
disable_mlock = true
ui            = false
log_level     = "warn"
`, s.path("vault", fmt.Sprintf("node%d", i+1)), i+1, join.String(), api, cluster, api, cluster)
}

// StartVaultNode starts node i of the cluster's Vault unless it runs; it
// starts sealed (UnsealVaultNode).
func (s *Stack) StartVaultNode(st *State, i int) error {
	pf := s.VaultNodePID(i)
	if pid, err := pf.Running(); err != nil || pid != 0 {
		return err
	}
	if !portFree(s.Ports.Vault + 1 + i) {
		return fmt.Errorf("port %d is taken by a process this stack did not start", s.Ports.Vault+1+i)
	}
	dir := s.path("vault", fmt.Sprintf("node%d", i+1))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	cfg := filepath.Join(dir, "config.hcl")
	if err := os.WriteFile(cfg, []byte(s.vaultNodeConfig(i)), 0o600); err != nil {
		return err
	}
	env := []string{"HOME=" + dir, "PATH=/usr/bin:/bin", "VAULT_DISABLE_USER_LOCKOUT=false"}
	pid, err := startDetached(pf, st.VaultBinary, []string{"server", "-config=" + cfg}, env, s.path("logs", fmt.Sprintf("vault-%d.log", i+1)), nil)
	if err != nil {
		return fmt.Errorf("start node %d: %w", i+1, err)
	}
	s.say("vault node %d starting (pid %d) on 127.0.0.1:%d", i+1, pid, s.Ports.Vault+1+i)
	return nil
}

// UnsealVaultNode unseals node i with the stack's key shares, waiting while
// a joining node has not yet got the leader's challenge.
func (s *Stack) UnsealVaultNode(ctx context.Context, st *State, i int) error {
	api, err := vault.NewAPIClient(st.Cluster.VaultNodes[i], "", 5*time.Second)
	if err != nil {
		return err
	}
	return s.waitFor(ctx, fmt.Sprintf("vault node %d unsealed", i+1), 60*time.Second, s.VaultNodePID(i), s.path("logs", fmt.Sprintf("vault-%d.log", i+1)), func(ctx context.Context) error {
		seal, err := api.Sys().SealStatusWithContext(ctx)
		if err != nil {
			return err
		}
		if !seal.Sealed {
			return nil
		}
		// A node that has not joined the cluster yet joins on its unseal,
		// once its retry_join has the leader's challenge; until then the
		// unseal fails and is tried again.
		if _, err := api.Sys().ResetUnsealProcessWithContext(ctx); err != nil {
			return err
		}
		for _, k := range st.Cluster.VaultUnsealKeys[:vaultThreshold] {
			if seal, err = api.Sys().UnsealWithContext(ctx, k); err != nil {
				return err
			}
		}
		if seal.Sealed {
			return fmt.Errorf("still sealed")
		}
		return nil
	})
}

// upVaultCluster starts the three Raft nodes, initialises the first (once),
// unseals all of them (the others join the first), starts their front on
// the Vault port and bootstraps khod's mounts, policy and AppRole through
// it.
func (s *Stack) upVaultCluster(ctx context.Context, st *State) error {
	bin, err := s.vaultBinary(ctx)
	if err != nil {
		return err
	}
	st.VaultBinary = bin
	st.VaultAddr = "http://" + loopback(s.Ports.Vault)
	c := st.Cluster
	c.VaultNodes = nil
	for i := 0; i < ClusterVaultNodes; i++ {
		c.VaultNodes = append(c.VaultNodes, "http://"+loopback(s.Ports.Vault+1+i))
		if err := s.StartVaultNode(st, i); err != nil {
			return err
		}
	}
	first, err := vault.NewAPIClient(c.VaultNodes[0], "", 5*time.Second)
	if err != nil {
		return err
	}
	if err := s.waitFor(ctx, "vault node 1", 60*time.Second, s.VaultNodePID(0), s.path("logs", "vault-1.log"), func(ctx context.Context) error {
		_, err := first.Sys().InitStatusWithContext(ctx)
		return err
	}); err != nil {
		return err
	}
	inited, err := first.Sys().InitStatusWithContext(ctx)
	if err != nil {
		return err
	}
	if !inited {
		resp, err := first.Sys().InitWithContext(ctx, &vaultapi.InitRequest{SecretShares: vaultShares, SecretThreshold: vaultThreshold})
		if err != nil {
			return fmt.Errorf("init: %w", err)
		}
		c.VaultUnsealKeys, st.VaultRootToken = resp.KeysB64, resp.RootToken
		st.VaultRoleID, st.VaultSecretID = "", ""
		// Save at once: losing the key shares loses every key in Vault.
		if err := s.saveState(st); err != nil {
			return err
		}
		s.say("vault initialised: %d key shares, %d unseal (kept in %s, mode 0600)", vaultShares, vaultThreshold, s.statePath())
	}
	if len(c.VaultUnsealKeys) < vaultThreshold {
		return fmt.Errorf("vault is initialised but this stack has no key shares (state lost): kho dev down, remove %s, kho dev up --cluster", s.path("vault"))
	}
	for i := range c.VaultNodes {
		if err := s.UnsealVaultNode(ctx, st, i); err != nil {
			return err
		}
	}
	if err := s.startFront("vault", loopback(s.Ports.Vault), hosts(c.VaultNodes), "/v1/sys/health?standbyok=true"); err != nil {
		return err
	}
	api, err := vault.NewAPIClient(st.VaultAddr, "", 5*time.Second)
	if err != nil {
		return err
	}
	// Unsealed nodes elect a leader; until one leads, standbys answer
	// health checks but refuse the bootstrap's calls.
	if err := s.waitFor(ctx, "vault leader", 60*time.Second, s.VaultNodePID(0), s.path("logs", "vault-1.log"), func(ctx context.Context) error {
		if s.activeVaultNode(ctx, st) < 0 {
			return fmt.Errorf("no node leads")
		}
		return vault.Health(ctx, api)
	}); err != nil {
		return err
	}
	s.say("vault: %d Raft nodes unsealed behind %s", ClusterVaultNodes, st.VaultAddr)
	return s.bootstrapVault(ctx, st, api)
}

// activeVaultNode is the index of the node that leads, or -1.
func (s *Stack) activeVaultNode(ctx context.Context, st *State) int {
	for i, addr := range st.Cluster.VaultNodes {
		api, err := vault.NewAPIClient(addr, "", 2*time.Second)
		if err != nil {
			continue
		}
		if h, err := api.Sys().HealthWithContext(ctx); err == nil && h.Initialized && !h.Sealed && !h.Standby {
			return i
		}
	}
	return -1
}

func hosts(urls []string) []string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = strings.TrimPrefix(u, "http://")
	}
	return out
}

// clusterPIDs lists the cluster's processes, in the order down stops them.
func (s *Stack) clusterPIDs() []struct {
	name string
	pf   PIDFile
	sig  syscall.Signal
} {
	type entry = struct {
		name string
		pf   PIDFile
		sig  syscall.Signal
	}
	var out []entry
	for i := 0; i < ClusterKhods; i++ {
		out = append(out, entry{fmt.Sprintf("khod %d", i+1), s.KhodNodePID(i), syscall.SIGTERM})
	}
	for _, f := range []string{"khod", "vault", "minio"} {
		out = append(out, entry{f + " front", s.frontPID(f), syscall.SIGTERM})
	}
	for i := 0; i < ClusterVaultNodes; i++ {
		out = append(out, entry{fmt.Sprintf("vault node %d", i+1), s.VaultNodePID(i), syscall.SIGTERM})
	}
	for i := 0; i < ClusterMinIONodes; i++ {
		out = append(out, entry{fmt.Sprintf("minio node %d", i+1), s.MinIONodePID(i), syscall.SIGTERM})
	}
	out = append(out, entry{"postgres replica", s.pgReplicaPID(), syscall.SIGINT})
	return out
}

// clusterStatus reports every node of a cluster stack.
func (s *Stack) clusterStatus(ctx context.Context, st *State) []ServiceStatus {
	c := st.Cluster
	var out []ServiceStatus
	rs := ServiceStatus{Name: "postgres replica", Address: loopback(s.Ports.Postgres + 1)}
	rs.PID, _ = s.pgReplicaPID().Running()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if conn, err := pgx.Connect(cctx, c.ReplicaURL); err != nil {
		rs.Detail = "not reachable"
	} else {
		var lag *float64
		if err := conn.QueryRow(cctx, `SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8`).Scan(&lag); err == nil {
			rs.Healthy, rs.Detail = true, "hot standby"
			if lag != nil {
				rs.Detail += fmt.Sprintf(", last replayed transaction %.1f s old", *lag)
			}
		}
		conn.Close(ctx)
	}
	cancel()
	out = append(out, rs)
	for i, addr := range c.MinIONodes {
		ns := ServiceStatus{Name: fmt.Sprintf("minio node %d", i+1), Address: addr}
		ns.PID, _ = s.MinIONodePID(i).Running()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := MinIOReady(cctx, addr); err == nil {
			ns.Healthy, ns.Detail = true, fmt.Sprintf("%d drives", ClusterMinIODrive)
		} else {
			ns.Detail = "not ready"
		}
		cancel()
		out = append(out, ns)
	}
	for i, addr := range c.VaultNodes {
		ns := ServiceStatus{Name: fmt.Sprintf("vault node %d", i+1), Address: addr}
		ns.PID, _ = s.VaultNodePID(i).Running()
		ns.Detail = "not reachable"
		if api, err := vault.NewAPIClient(addr, "", 2*time.Second); err == nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if h, err := api.Sys().HealthWithContext(cctx); err == nil {
				ns.Healthy = h.Initialized && !h.Sealed
				switch {
				case h.Sealed:
					ns.Detail = "sealed"
				case h.Standby:
					ns.Detail = "standby"
				default:
					ns.Detail = "active"
				}
			}
			cancel()
		}
		out = append(out, ns)
	}
	fronts := []struct{ name, addr string }{{"minio", st.MinIOEndpoint}, {"vault", st.VaultAddr}}
	// khod's replicas are listed once kho dev khod has started them.
	if _, err := os.Stat(s.KhodNodePID(0).path); err == nil {
		for i, addr := range c.KhodNodes {
			ks := ServiceStatus{Name: fmt.Sprintf("khod %d", i+1), Address: addr, Detail: "not serving"}
			ks.PID, _ = s.KhodNodePID(i).Running()
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if httpOK(cctx, "http://"+addr+"/healthz") {
				ks.Healthy, ks.Detail = true, "metrics on "+c.KhodMetrics[i]
			}
			cancel()
			out = append(out, ks)
		}
		fronts = append(fronts, struct{ name, addr string }{"khod", st.KhodListen})
	}
	for _, f := range fronts {
		fs := ServiceStatus{Name: f.name + " front", Address: f.addr, Detail: "round-robin over the nodes that answer"}
		fs.PID, _ = s.frontPID(f.name).Running()
		fs.Healthy = fs.PID != 0
		out = append(out, fs)
	}
	return out
}

// StartKhodNode starts the cluster's khod replica i, detached, with bin and
// args, unless it runs; WaitKhodNode waits for it.
func (s *Stack) StartKhodNode(st *State, i int, bin string, args ...string) (int, error) {
	pf := s.KhodNodePID(i)
	if pid, err := pf.Running(); err != nil || pid != 0 {
		return pid, err
	}
	env := []string{"PATH=/usr/bin:/bin"}
	for _, kv := range st.KhodNodeEnv(i) {
		env = append(env, kv[0]+"="+kv[1])
	}
	return startDetached(pf, bin, args, env, s.path("logs", fmt.Sprintf("khod-%d.log", i+1)), nil)
}

// WaitKhodNode waits until khod replica i answers ready.
func (s *Stack) WaitKhodNode(ctx context.Context, st *State, i int) error {
	return s.waitFor(ctx, fmt.Sprintf("khod %d", i+1), 60*time.Second, s.KhodNodePID(i), s.path("logs", fmt.Sprintf("khod-%d.log", i+1)), func(ctx context.Context) error {
		if !httpOK(ctx, "http://"+st.Cluster.KhodNodes[i]+"/readyz") {
			return fmt.Errorf("not ready")
		}
		return nil
	})
}

// StartKhodFront starts the front of the khod replicas on khod's port.
func (s *Stack) StartKhodFront(st *State) error {
	return s.startFront("khod", st.KhodListen, st.Cluster.KhodNodes, "/healthz")
}
