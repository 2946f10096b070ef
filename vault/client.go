// Package vault is kho's HashiCorp Vault adapter. khod reaches Vault only
// through it, with a token from an AppRole login that it renews for as long
// as it runs (and replaces by logging in again when renewal must stop). It
// never holds a root token; the operator's bootstrap (Bootstrap,
// BootstrapPKI) is the only code that does, and only in the kho CLI.
//
// Transit (transit.go) keeps subject keys that wrap file keys, signs
// manifests, receipts and audit checkpoints through Transit-backed signers;
// pki.go issues agency certificates from the deployment's PKI.
//
// vault imports the root package only. The Vault client is imported as
// vaultapi.
package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"kho"
)

// Config says where Vault is and how khod logs in.
type Config struct {
	Address  string // http(s)://host:port
	RoleID   string // AppRole role_id
	SecretID string // AppRole secret_id
	// AppRoleMount is where the AppRole method is mounted (default "approle").
	AppRoleMount string
	// Timeout bounds each call to Vault (default 5s: Vault answers in
	// milliseconds, and a frozen one is an outage within seconds).
	Timeout time.Duration
	Logger  *slog.Logger
	// WrapTransport, when set, wraps the HTTP transport (metrics).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// RefusalGrace: a 403 this soon after a login is taken as a policy's
	// refusal, not the token's death, and does not start another login
	// (default 5 s).
	RefusalGrace time.Duration
}

// Client is an authenticated Vault client whose token is kept alive in the
// background until Close.
type Client struct {
	api    *vaultapi.Client
	cfg    Config
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	// refused is signalled when Vault answers 403 to one of kho's calls:
	// the token was revoked or expired, so keepAlive logs in again now
	// rather than at the next renewal.
	refused chan struct{}

	mu        sync.Mutex
	renewals  int
	logins    int
	lastLogin time.Time
	lastError error
}

// refusalWatcher tells the client when Vault refuses its token.
type refusalWatcher struct {
	next http.RoundTripper
	c    *Client
}

func (w refusalWatcher) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := w.next.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusForbidden && !strings.Contains(req.URL.Path, "/auth/") {
		w.c.tokenRefused()
	}
	return resp, err
}

// tokenRefused marks the token unusable (readiness fails) and wakes
// keepAlive to log in again; refusals within a few seconds of a login are
// a policy's doing, not a dead token, and only logged.
func (c *Client) tokenRefused() {
	c.mu.Lock()
	recent := time.Since(c.lastLogin) < c.cfg.RefusalGrace
	if !recent {
		c.lastError = kho.Errorf(kho.EUNAVAILABLE, "vault refused kho's token; logging in again")
	}
	c.mu.Unlock()
	if recent {
		return
	}
	select {
	case c.refused <- struct{}{}:
	default:
	}
}

var _ kho.HealthChecker = (*Client)(nil)

// ValidateAddress checks that addr is an absolute http(s) URL with a host.
func ValidateAddress(addr string) error {
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return kho.Errorf(kho.EINVALID, "vault: address %q must be an http(s) URL such as http://127.0.0.1:8200", addr)
	}
	return nil
}

// NewAPIClient returns a plain Vault API client for addr with the given token
// (which may be empty). The operator's CLI uses it with the root token for
// bootstrap; khod never does.
func NewAPIClient(addr, token string, timeout time.Duration) (*vaultapi.Client, error) {
	return newAPIClient(addr, token, timeout, nil)
}

func newAPIClient(addr, token string, timeout time.Duration, wrap func(http.RoundTripper) http.RoundTripper) (*vaultapi.Client, error) {
	if err := ValidateAddress(addr); err != nil {
		return nil, err
	}
	cfg := vaultapi.DefaultConfig()
	cfg.Address = addr
	if timeout > 0 {
		cfg.Timeout = timeout
	}
	if wrap != nil {
		cfg.HttpClient.Transport = wrap(cfg.HttpClient.Transport)
	}
	cfg.MaxRetries = 0
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, kho.WrapError(kho.EINVALID, "vault: client", err)
	}
	// Never pick up VAULT_TOKEN from the environment by accident.
	c.ClearToken()
	if token != "" {
		c.SetToken(token)
	}
	return c, nil
}

// New validates cfg, logs in with AppRole and starts renewing the token. It
// fails when Vault cannot be reached or refuses the credentials.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.RoleID == "" || cfg.SecretID == "" {
		return nil, kho.Errorf(kho.EINVALID, "vault: AppRole role_id and secret_id are required")
	}
	if cfg.AppRoleMount == "" {
		cfg.AppRoleMount = "approle"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.RefusalGrace == 0 {
		cfg.RefusalGrace = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg, log: cfg.Logger, done: make(chan struct{}), refused: make(chan struct{}, 1)}
	api, err := newAPIClient(cfg.Address, "", cfg.Timeout, func(rt http.RoundTripper) http.RoundTripper {
		if cfg.WrapTransport != nil {
			rt = cfg.WrapTransport(rt)
		}
		return refusalWatcher{next: rt, c: c}
	})
	if err != nil {
		return nil, err
	}
	c.api = api
	secret, err := c.login(ctx)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go c.keepAlive(rctx, secret)
	return c, nil
}

// login exchanges the AppRole credentials for a token and installs it.
func (c *Client) login(ctx context.Context) (*vaultapi.Secret, error) {
	secret, err := c.api.Logical().WriteWithContext(ctx, "auth/"+c.cfg.AppRoleMount+"/login", map[string]any{
		"role_id":   c.cfg.RoleID,
		"secret_id": c.cfg.SecretID,
	})
	if err != nil {
		var re *vaultapi.ResponseError
		if errors.As(err, &re) && (re.StatusCode == 400 || re.StatusCode == 403) {
			return nil, kho.WrapError(kho.EUNAUTHORIZED, "vault: AppRole login refused (check role_id and secret_id)", err)
		}
		return nil, kho.WrapError(kho.EUNAVAILABLE, fmt.Sprintf("vault: cannot log in at %s", c.cfg.Address), err)
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		return nil, kho.Errorf(kho.EUNAVAILABLE, "vault: AppRole login returned no token")
	}
	c.api.SetToken(secret.Auth.ClientToken)
	c.mu.Lock()
	c.logins++
	c.lastLogin = time.Now()
	c.mu.Unlock()
	return secret, nil
}

// keepAlive renews the token while it can, and logs in again when renewal
// ends (max TTL reached, token revoked, Vault restarted). Failed logins are
// retried with backoff; calls made meanwhile fail with EUNAVAILABLE.
func (c *Client) keepAlive(ctx context.Context, secret *vaultapi.Secret) {
	defer close(c.done)
	backoff := time.Second
	for {
		if secret != nil && secret.Auth != nil && secret.Auth.Renewable {
			err := c.watch(ctx, secret)
			if ctx.Err() != nil {
				return
			}
			c.setError(err)
			if err != nil {
				c.log.Warn("vault token renewal stopped; logging in again", "err", err)
			}
		} else {
			// A non-renewable token: log in again shortly before it expires.
			ttl := time.Minute
			if secret != nil && secret.Auth != nil && secret.Auth.LeaseDuration > 0 {
				ttl = time.Duration(secret.Auth.LeaseDuration) * time.Second * 2 / 3
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(ttl):
			case <-c.refused:
				c.log.Warn("vault refused the token; logging in again")
			}
		}
		for {
			lctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
			s, err := c.login(lctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				secret, backoff = s, time.Second
				c.setError(nil)
				break
			}
			c.setError(err)
			c.log.Error("vault login failed; retrying", "err", err, "retry_in", backoff.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 30*time.Second)
		}
	}
}

// watch renews secret's token until the watcher stops; it returns why.
func (c *Client) watch(ctx context.Context, secret *vaultapi.Secret) error {
	w, err := c.api.NewLifetimeWatcher(&vaultapi.LifetimeWatcherInput{Secret: secret})
	if err != nil {
		return err
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.DoneCh():
			return err
		case <-c.refused:
			return errors.New("vault refused the token")
		case <-w.RenewCh():
			c.mu.Lock()
			c.renewals++
			c.mu.Unlock()
			c.log.Debug("vault token renewed")
		}
	}
}

func (c *Client) setError(err error) {
	c.mu.Lock()
	c.lastError = err
	c.mu.Unlock()
}

// Stats reports how many times the client logged in and renewed its token.
func (c *Client) Stats() (logins, renewals int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.logins, c.renewals
}

// API returns the authenticated Vault API client. It carries khod's
// least-privilege token; the adapters of this package use it, and tests use it
// to show what that token can and cannot do.
func (c *Client) API() *vaultapi.Client { return c.api }

// Health asks Vault whether it is initialised, unsealed and active, and
// fails while kho has no usable token (refused, or a login failing).
func (c *Client) Health(ctx context.Context) error {
	if err := Health(ctx, c.api); err != nil {
		return err
	}
	c.mu.Lock()
	err := c.lastError
	c.mu.Unlock()
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "vault: kho has no usable token", err)
	}
	return nil
}

// Health asks the Vault behind api whether it is initialised, unsealed and
// active (or a standby that forwards requests).
func Health(ctx context.Context, api *vaultapi.Client) error {
	h, err := api.Sys().HealthWithContext(ctx)
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "vault: not reachable", err)
	}
	switch {
	case !h.Initialized:
		return kho.Errorf(kho.EUNAVAILABLE, "vault: not initialised")
	case h.Sealed:
		return kho.Errorf(kho.EUNAVAILABLE, "vault: sealed")
	}
	return nil
}

// Close stops renewal and revokes the token, so a stopped khod leaves no
// live credential behind.
func (c *Client) Close() error {
	c.cancel()
	<-c.done
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := c.api.Logical().WriteWithContext(ctx, "auth/token/revoke-self", nil); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "vault: revoke token", err)
	}
	c.api.ClearToken()
	return nil
}
