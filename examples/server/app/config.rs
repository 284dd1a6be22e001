//! The example server's configuration (what `main.rs` parses from its
//! flags) and its storage: memory, SQLite or PostgreSQL, with the
//! key-encryption key that seals signing keys at rest.

use std::sync::Arc;

use authio_mcp::discovery::Issuer;
use authio_mcp::project::DcrMode;
use authio_mcp::resource::ResourceUri;
use authio_mcp::secret::SecretString;
use authio_mcp::server::AuthorizationServer;
use authio_mcp::store::StoreError;
use authio_mcp::store::sql::{PostgresStore, SqlOptions, SqliteStore};
use authio_mcp::upstream::{ProviderName, UpstreamHttp};
use base64::Engine as _;

/// What the example server is configured with.
#[derive(Clone)]
pub struct Config {
    /// The issuer identifier.
    pub issuer: Issuer,
    /// Bearer token for `/admin`.
    pub admin_token: String,
    /// Approve every valid authorization as `user_demo`.
    pub auto_approve: bool,
    /// Let CIMD documents come from loopback addresses (development).
    pub allow_loopback_cimd: bool,
    /// Extra trusted root certificate (PEM) for CIMD fetches.
    pub cimd_root_cert: Option<Vec<u8>>,
    /// The demo project's DCR mode (after the MCP cascade).
    pub dcr_mode: Option<DcrMode>,
    /// The MCP server the demo project serves (default resource).
    pub resource: ResourceUri,
    /// The credential resource servers present to the introspection endpoint.
    pub introspection_token: String,
    /// Sign users in at an upstream OpenID Connect provider instead of the
    /// demo login.
    pub upstream: Option<UpstreamConfig>,
}

/// `--upstream-*`: the demo project's upstream provider.
#[derive(Clone)]
pub struct UpstreamConfig {
    /// The provider's name in paths (`--upstream-name`, default `oidc`).
    pub name: ProviderName,
    /// Its issuer (`--upstream-issuer`).
    pub issuer: Issuer,
    /// This server's client id there (`--upstream-client-id`).
    pub client_id: String,
    /// Its client secret (`--upstream-client-secret`); `None`: a public
    /// client (PKCE only).
    pub client_secret: Option<SecretString>,
    /// `--upstream-private-key-jwt`: authenticate with a client assertion
    /// signed by the project's key (register `<issuer>/.well-known/jwks.json`
    /// at the provider) instead of the secret.
    pub private_key_jwt: bool,
    /// `--allow-http-upstream`: an `http://` issuer on loopback.
    pub allow_http: bool,
    /// `--upstream-userinfo`: call the provider's userinfo endpoint on
    /// every sign-in (otherwise only when the ID token has no email).
    pub userinfo: bool,
    /// Tests only: the HTTP client to reach the provider with (default: a
    /// `ReqwestUpstreamHttp`).
    pub http: Option<Arc<dyn UpstreamHttp>>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("issuer", &self.issuer)
            .field("admin_token", &"[redacted]")
            .field("auto_approve", &self.auto_approve)
            .field("allow_loopback_cimd", &self.allow_loopback_cimd)
            .field("dcr_mode", &self.dcr_mode)
            .field("resource", &self.resource)
            .field("introspection_token", &"[redacted]")
            .field(
                "upstream",
                &self.upstream.as_ref().map(|u| (u.name.as_str(), u.issuer.as_str())),
            )
            .finish_non_exhaustive()
    }
}

/// Where the server keeps its records.
#[derive(Clone)]
pub enum Storage {
    /// In process memory: lost at exit, not shared between instances.
    Memory,
    /// One SQLite file.
    Sqlite(Arc<SqliteStore>),
    /// A PostgreSQL database, shared by any number of instances.
    Postgres(Arc<PostgresStore>),
}

/// Where the key-encryption key lives when `--key-encryption-key-file`
/// is not given: next to a SQLite database file (`PATH.kek`), else
/// `authio-example.kek` in the working directory (several instances on
/// one PostgreSQL database must all be given the same file).
pub fn key_encryption_key_path(database_url: &str) -> std::path::PathBuf {
    let file = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .map(|rest| rest.split('?').next().unwrap_or_default())
        .filter(|f| !f.is_empty() && !f.contains(":memory:"));
    match file {
        Some(f) => std::path::PathBuf::from(format!("{f}.kek")),
        None => std::path::PathBuf::from("authio-example.kek"),
    }
}

/// Reads the 256-bit key-encryption key (standard base64 on one line, as
/// `openssl rand -base64 32` writes it) from `path`, creating the file
/// with a fresh random key (mode 0600) when it does not exist. Two
/// processes starting at once agree on one key: the file appears whole,
/// by a hard link, or not at all. The key id is a fingerprint of the key,
/// so replacing the file is noticed.
pub fn load_or_create_key_encryption_key(
    path: &std::path::Path,
) -> Result<authio_mcp::store::Aes256GcmKeyEncryption, Box<dyn std::error::Error + Send + Sync>> {
    use base64::engine::general_purpose::STANDARD;
    use sha2::Digest as _;
    if !path.exists() {
        let key = authio_mcp::store::Aes256GcmKeyEncryption::generate_key()?;
        let mut nonce = [0u8; 8];
        authio_mcp::server::RandomSource::fill(&authio_mcp::server::SystemRandom, &mut nonce);
        let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = path.with_extension(format!("kek-{}-{nonce}.tmp", std::process::id()));
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
        {
            use std::io::Write as _;
            let mut f = open.open(&tmp)?;
            writeln!(f, "{}", STANDARD.encode(*key))?;
            f.sync_all()?;
        }
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => tracing::warn!(
                path = %path.display(),
                "created a new key-encryption key: signing keys in the database are sealed with it; \
                 back it up apart from the database (without it they cannot be read)"
            ),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if std::fs::metadata(path)?.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the key-encryption key file is readable by other users");
        }
    }
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path)?);
    let bytes = zeroize::Zeroizing::new(
        STANDARD
            .decode(text.trim())
            .map_err(|_| "expected 32 bytes in standard base64 on one line")?,
    );
    let key: &[u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| "expected 32 bytes in standard base64 on one line")?;
    let digest = sha2::Sha256::digest(key);
    let id: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Ok(authio_mcp::store::Aes256GcmKeyEncryption::new(
        &format!("file-{id}"),
        key,
    )?)
}

/// Logs what start-up sealing did; a key that cannot be opened (the
/// database was sealed with another key file) stops the start.
fn report_sealed(
    sealed: Result<u64, authio_mcp::store::StoreError>,
    path: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    match sealed {
        Ok(0) => Ok(()),
        Ok(n) => {
            tracing::info!(keys = n, key_file = %path.display(), "sealed signing keys stored unsealed or under another key");
            Ok(())
        }
        Err(e) => Err(format!(
            "{e} (is {} the key-encryption key file this database was sealed with?)",
            path.display()
        )
        .into()),
    }
}

impl Storage {
    /// Opens and migrates the store a `--database-url` names: `memory:`,
    /// `sqlite://PATH` (created if missing) or `postgres://...`. SQL
    /// stores seal signing keys with the key-encryption key in
    /// `key_file` (see [`key_encryption_key_path`]; created on first
    /// start), and seal whatever an earlier run stored otherwise.
    pub async fn open(
        url: &str,
        options: SqlOptions,
        key_file: Option<&str>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        if url == "memory:" {
            return Ok(Self::Memory);
        }
        let path = key_file.map_or_else(|| key_encryption_key_path(url), std::path::PathBuf::from);
        let kek = load_or_create_key_encryption_key(&path)
            .map_err(|e| format!("key-encryption key file {}: {e}", path.display()))?;
        let options = options.key_encryption(Arc::new(kek));
        if url.starts_with("sqlite:") {
            let store = SqliteStore::connect(url, options).await?;
            store.migrate().await?;
            let sealed = store.reseal_signing_keys().await;
            report_sealed(sealed, &path)?;
            return Ok(Self::Sqlite(Arc::new(store)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let store = PostgresStore::connect(url, options).await?;
            store.migrate().await?;
            let sealed = store.reseal_signing_keys().await;
            report_sealed(sealed, &path)?;
            return Ok(Self::Postgres(Arc::new(store)));
        }
        Err(format!("--database-url {url}: expected memory:, sqlite://PATH or postgres://...").into())
    }

    /// A short description for the start-up banner (no credentials).
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Memory => "memory (lost at exit)",
            Self::Sqlite(_) => "SQLite",
            Self::Postgres(_) => "PostgreSQL",
        }
    }

    /// Whether the store answers: a memory store always does, a SQL
    /// store when a query goes through.
    pub async fn check(&self) -> Result<(), StoreError> {
        match self {
            Self::Memory => Ok(()),
            Self::Sqlite(s) => s.schema_version().await.map(drop),
            Self::Postgres(s) => s.schema_version().await.map(drop),
        }
    }

    /// Writes queued audit events and closes the database.
    pub async fn close(&self) {
        match self {
            Self::Memory => {}
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
        }
    }

    /// Deletes what can go: expired codes and tokens, unusable initial
    /// access tokens, expired upstream logins, and (SQL) expired CIMD
    /// entries and old audit events.
    pub async fn purge(&self, server: &AuthorizationServer) -> Result<u64, authio_mcp::store::StoreError> {
        let now = server.now();
        match self {
            Self::Memory => server.purge_expired().await.map(|n| n as u64),
            Self::Sqlite(s) => s.purge(now).await.map(|r| r.total()),
            Self::Postgres(s) => s.purge(now).await.map(|r| r.total()),
        }
    }
}
