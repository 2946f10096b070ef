package devstack

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"kho/policies"
	"kho/vault"
)

func (s *Stack) vaultPID() PIDFile { return PIDFile{s.path("run", "vault.pid")} }

// vaultConfig is a single-node server with file storage on loopback: the
// same server kind as production (initialised, sealed, unsealed with a key),
// not Vault's in-memory -dev mode, so keys survive down and up.
func vaultConfig(dataDir string, port int) string {
	return fmt.Sprintf(`storage "file" {
  path = %q
}
listener "tcp" {
  address     = "127.0.0.1:%d"
  tls_disable = true
}
api_addr      = "http://127.0.0.1:%d"
disable_mlock = true
ui            = false
log_level     = "warn"
`, dataDir, port, port)
}

func (s *Stack) upVault(ctx context.Context, st *State) error {
	bin, err := s.vaultBinary(ctx)
	if err != nil {
		return err
	}
	st.VaultBinary = bin
	st.VaultAddr = fmt.Sprintf("http://127.0.0.1:%d", s.Ports.Vault)
	logPath := s.path("logs", "vault.log")
	if pid, err := s.vaultPID().Running(); err != nil {
		return err
	} else if pid != 0 {
		s.say("vault already running (pid %d) on %s", pid, st.VaultAddr)
	} else {
		if !portFree(s.Ports.Vault) {
			return fmt.Errorf("port %d is taken by a process this stack did not start; stop it or set KHO_DEV_VAULT_PORT", s.Ports.Vault)
		}
		data := s.path("vault", "data")
		if err := os.MkdirAll(data, 0o700); err != nil {
			return err
		}
		cfgPath := s.path("vault", "config.hcl")
		if err := os.WriteFile(cfgPath, []byte(vaultConfig(data, s.Ports.Vault)), 0o600); err != nil {
			return err
		}
		env := []string{"HOME=" + s.path("vault"), "PATH=/usr/bin:/bin", "VAULT_DISABLE_USER_LOCKOUT=false"}
		pid, err := startDetached(s.vaultPID(), bin, []string{"server", "-config=" + cfgPath}, env, logPath, nil)
		if err != nil {
			return fmt.Errorf("start: %w", err)
		}
		s.say("vault starting (pid %d) on %s", pid, st.VaultAddr)
	}
	api, err := vault.NewAPIClient(st.VaultAddr, "", 5*time.Second)
	if err != nil {
		return err
	}
	// Any answer from sys/health means the listener is up.
	if err := s.waitFor(ctx, "vault", 60*time.Second, s.vaultPID(), logPath, func(ctx context.Context) error {
		_, err := api.Sys().HealthWithContext(ctx)
		return err
	}); err != nil {
		return err
	}
	inited, err := api.Sys().InitStatusWithContext(ctx)
	if err != nil {
		return err
	}
	if !inited {
		if st.VaultRootToken != "" {
			s.say("vault: storage was reset; initialising again")
		}
		resp, err := api.Sys().InitWithContext(ctx, &vaultapi.InitRequest{SecretShares: 1, SecretThreshold: 1})
		if err != nil {
			return fmt.Errorf("init: %w", err)
		}
		st.VaultUnsealKey, st.VaultRootToken = resp.KeysB64[0], resp.RootToken
		st.VaultRoleID, st.VaultSecretID = "", ""
		// Save at once: losing the unseal key loses every key in Vault.
		if err := s.saveState(st); err != nil {
			return err
		}
		s.say("vault initialised (unseal key and root token kept in %s, mode 0600)", s.statePath())
	}
	seal, err := api.Sys().SealStatusWithContext(ctx)
	if err != nil {
		return err
	}
	if seal.Sealed {
		if st.VaultUnsealKey == "" {
			return fmt.Errorf("vault is sealed and this stack has no unseal key (state lost): kho dev down, remove %s, kho dev up", s.path("vault"))
		}
		if _, err := api.Sys().UnsealWithContext(ctx, st.VaultUnsealKey); err != nil {
			return fmt.Errorf("unseal: %w", err)
		}
	}
	if err := s.waitFor(ctx, "vault", 30*time.Second, s.vaultPID(), logPath, func(ctx context.Context) error {
		return vault.Health(ctx, api)
	}); err != nil {
		return err
	}
	return s.bootstrapVault(ctx, st, api)
}

// bootstrapVault prepares Vault for khod with the root token: kho's mounts,
// PKI, khod's policy and its AppRole.
func (s *Stack) bootstrapVault(ctx context.Context, st *State, api *vaultapi.Client) error {
	api.SetToken(st.VaultRootToken)
	// khod runs on this machine: its secret_id works from loopback only.
	creds, err := BootstrapVault(ctx, api, []string{"127.0.0.1/32"}, 0)
	if err != nil {
		return err
	}
	st.VaultRoleID, st.VaultSecretID = creds.RoleID, creds.SecretID
	if err := vault.BootstrapPKI(ctx, api, vault.PKIOptions{Organization: "kho (dev)", PublicURL: fmt.Sprintf("http://127.0.0.1:%d", s.Ports.Khod)}); err != nil {
		return err
	}
	s.say("vault: mounts, PKI, khod policy and AppRole ready")
	return nil
}

// BootstrapVault prepares a Vault for khod with an operator's client: kho's
// mounts, khod's embedded least-privilege policy and its AppRole, whose
// secret_id lives for secretTTL and works only from cidrs. kho dev up and
// kho init both use it.
func BootstrapVault(ctx context.Context, operator *vaultapi.Client, cidrs []string, secretTTL time.Duration) (*vault.AppRoleCredentials, error) {
	hcl, err := policies.KhodVaultPolicy()
	if err != nil {
		return nil, err
	}
	return vault.Bootstrap(ctx, operator, vault.BootstrapOptions{PolicyName: policies.KhodVaultPolicyName, PolicyHCL: hcl,
		BoundCIDRs: cidrs, SecretIDTTL: secretTTL})
}

func (s *Stack) stopVault() (bool, error) {
	return s.vaultPID().stop(syscall.SIGTERM, 20*time.Second)
}

func (s *Stack) vaultStatus(ctx context.Context, st *State) ServiceStatus {
	ss := ServiceStatus{Name: "vault", Address: st.VaultAddr}
	ss.PID, _ = s.vaultPID().Running()
	api, err := vault.NewAPIClient(st.VaultAddr, "", 2*time.Second)
	if err != nil {
		ss.Detail = err.Error()
		return ss
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	h, err := api.Sys().HealthWithContext(cctx)
	if err != nil {
		ss.Detail = "not reachable"
		return ss
	}
	ss.Healthy = h.Initialized && !h.Sealed
	ss.Detail = "Vault " + h.Version + ", initialised=" + strconv.FormatBool(h.Initialized) + ", sealed=" + strconv.FormatBool(h.Sealed)
	return ss
}
