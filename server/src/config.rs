//! Server configuration: command-line [`Options`] and the TOML [`Config`] that decides, per
//! model, which modes clients may ask for, the default one, and whether the point used may be
//! returned.
//!
//! ```toml
//! [server]
//! request_timeout_ms = 30000
//! max_body_mb = 64
//! max_connections = 1024
//! header_timeout_ms = 10000
//! keep_alive_ms = 5000
//! max_work = 262144                 # members x samples of one request
//! receive_mb = 512                  # bodies being received at once, each counted twice
//! max_response_mb = 64              # the largest answer, reckoned before it is computed
//! keyed_secret_file = "keyed.key"   # 64 hex digits; or keyed_secret = "..."
//! audit_log = "audit.jsonl"
//! audit_key_file = "audit.key"      # or audit_key = "..."
//!
//! [defaults]                        # every model
//! modes = ["ensemble", "at", "randomized", "keyed"]
//! default_mode = "ensemble"
//! return_point = false
//! grid = 5                          # ensemble of a curve: M equally spaced points
//! randomized_grid = 21              # randomised and keyed modes: R grid points
//! keyed_quantum = 0.01              # keyed mode: round each value to a multiple first
//!
//! [models.digits]                   # one model, overriding the defaults
//! modes = ["randomized"]
//! default_mode = "randomized"
//! ```
//!
//! Relative paths are relative to the configuration file's folder.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use modeconn_runtime::Device;
use serde::Deserialize;

use crate::{Error, Result};

/// How a request chooses the members that answer it (`parameters.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A grid of M points of a curve, or every member of a snapshot set.
    Ensemble,
    /// Points the client names: `parameters.t` for curves, `parameters.members` for sets (a
    /// list, one number, or a comma-separated string).
    At,
    /// One point per sample from the operating system's CSPRNG.
    Randomized,
    /// One point per sample from a keyed hash of the sample's bytes with the server secret.
    Keyed,
}

impl Mode {
    /// Every mode.
    pub const ALL: [Mode; 4] = [Mode::Ensemble, Mode::At, Mode::Randomized, Mode::Keyed];

    /// The mode's name in requests and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Ensemble => "ensemble",
            Mode::At => "at",
            Mode::Randomized => "randomized",
            Mode::Keyed => "keyed",
        }
    }

    /// Whether each sample gets its own point (which is then secret unless configured).
    pub fn is_per_sample(self) -> bool {
        matches!(self, Mode::Randomized | Mode::Keyed)
    }

    /// Parses a mode name.
    pub fn parse(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// What one model allows, after defaults are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Modes clients may ask for.
    pub modes: Vec<Mode>,
    /// The mode of requests that name none.
    pub default_mode: Mode,
    /// Whether randomised and keyed answers may include the point used.
    pub return_point: bool,
    /// Points of a curve in `ensemble` mode.
    pub grid: usize,
    /// Grid points of a curve in `randomized` and `keyed` modes.
    pub randomized_grid: usize,
    /// In `keyed` mode, each input value is rounded to a multiple of this before it is hashed,
    /// so that inputs closer than about half of it meet the same point; `None` hashes the
    /// values themselves (with `-0` read as `+0`).
    pub keyed_quantum: Option<f32>,
}

/// Policy keys as written in `[defaults]` or `[models.NAME]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    modes: Option<Vec<Mode>>,
    default_mode: Option<Mode>,
    return_point: Option<bool>,
    grid: Option<usize>,
    randomized_grid: Option<usize>,
    keyed_quantum: Option<f64>,
}

/// `[server]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    request_timeout_ms: Option<u64>,
    max_body_mb: Option<usize>,
    max_connections: Option<usize>,
    header_timeout_ms: Option<u64>,
    keep_alive_ms: Option<u64>,
    max_work: Option<usize>,
    receive_mb: Option<usize>,
    max_response_mb: Option<usize>,
    keyed_secret: Option<String>,
    keyed_secret_file: Option<PathBuf>,
    audit_log: Option<PathBuf>,
    audit_key: Option<String>,
    audit_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    server: ServerFile,
    #[serde(default)]
    defaults: PolicyFile,
    #[serde(default)]
    models: BTreeMap<String, PolicyFile>,
}

/// The server configuration file, parsed and checked (an empty file is a valid one).
#[derive(Debug, Clone, Default)]
pub struct Config {
    file: ConfigFile,
    limits: LimitOverrides,
    keyed_secret: Option<[u8; 32]>,
    audit: Option<(PathBuf, [u8; 32])>,
}

impl Config {
    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses configuration text; relative paths are taken from `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config> {
        let file: ConfigFile = toml::from_str(text)
            .map_err(|e| Error::Config(e.to_string().trim().replace('\n', " ")))?;
        let s = &file.server;
        let keyed_secret = secret(
            "keyed_secret",
            s.keyed_secret.as_deref(),
            s.keyed_secret_file.as_deref(),
            base,
        )?;
        let audit_key = secret(
            "audit_key",
            s.audit_key.as_deref(),
            s.audit_key_file.as_deref(),
            base,
        )?;
        let audit = match (&s.audit_log, audit_key) {
            (Some(log), Some(key)) => Some((base.join(log), key)),
            (Some(_), None) => {
                return Err(Error::Config(
                    "`audit_log` needs `audit_key` or `audit_key_file` (64 hex digits): the key \
                     seals the points and keys the input fingerprints"
                        .into(),
                ));
            }
            (None, Some(_)) => {
                return Err(Error::Config(
                    "`audit_key` is set but `audit_log` is not".into(),
                ));
            }
            (None, None) => None,
        };
        let limits = LimitOverrides {
            max_body_bytes: s.max_body_mb.map(mib),
            request_timeout: s.request_timeout_ms.map(Duration::from_millis),
            max_connections: s.max_connections,
            header_timeout: s.header_timeout_ms.map(Duration::from_millis),
            keep_alive: s.keep_alive_ms.map(Duration::from_millis),
            max_work: s.max_work,
            receive_bytes: s.receive_mb.map(mib),
            max_response_bytes: s.max_response_mb.map(mib),
        };
        limits.check(|key| format!("`{}`", key.file))?;
        let config = Config {
            limits,
            keyed_secret,
            audit,
            file,
        };
        // Check the defaults on their own, so a mistake there is reported even before a model
        // uses them.
        config.policy("defaults")?;
        for name in config.file.models.keys() {
            config.policy(name)?;
        }
        Ok(config)
    }

    /// The policy of a model: its `[models.NAME]` section over `[defaults]` over the built-in
    /// defaults (every mode but `keyed`, which needs a secret; `ensemble` by default; points
    /// not returned; grids of 5 and 21).
    pub fn policy(&self, model: &str) -> Result<Policy> {
        let own = self.file.models.get(model).cloned().unwrap_or_default();
        let d = &self.file.defaults;
        let modes = own.modes.or_else(|| d.modes.clone()).unwrap_or_else(|| {
            let mut m = vec![Mode::Ensemble, Mode::At, Mode::Randomized];
            if self.keyed_secret.is_some() {
                m.push(Mode::Keyed);
            }
            m
        });
        let policy = Policy {
            default_mode: own
                .default_mode
                .or(d.default_mode)
                .unwrap_or(*modes.first().unwrap_or(&Mode::Ensemble)),
            return_point: own.return_point.or(d.return_point).unwrap_or(false),
            grid: own.grid.or(d.grid).unwrap_or(5),
            randomized_grid: own.randomized_grid.or(d.randomized_grid).unwrap_or(21),
            keyed_quantum: None,
            modes,
        };
        let what = if model == "defaults" {
            "[defaults]".to_string()
        } else {
            format!("[models.{model}]")
        };
        if policy.modes.is_empty() {
            return Err(Error::Config(format!("{what}: `modes` is empty")));
        }
        if !policy.modes.contains(&policy.default_mode) {
            return Err(Error::Config(format!(
                "{what}: default_mode `{}` is not one of its modes",
                policy.default_mode.as_str()
            )));
        }
        if policy.modes.contains(&Mode::Keyed) && self.keyed_secret.is_none() {
            return Err(Error::Config(format!(
                "{what}: mode `keyed` needs `keyed_secret` or `keyed_secret_file` in [server]"
            )));
        }
        if policy.grid < 2 || policy.randomized_grid < 2 {
            return Err(Error::Config(format!(
                "{what}: `grid` and `randomized_grid` must be at least 2"
            )));
        }
        let mut policy = policy;
        if let Some(q) = own.keyed_quantum.or(d.keyed_quantum) {
            let single = q as f32;
            if !(q.is_finite() && q > 0.0 && single.is_finite() && single > 0.0) {
                return Err(Error::Config(format!(
                    "{what}: `keyed_quantum` is {q}; it must be a positive, finite number (in \
                     single precision)"
                )));
            }
            policy.keyed_quantum = Some(single);
        }
        Ok(policy)
    }

    /// Adds the policy of model `name` from its own file (a model repository's
    /// `NAME/config.toml`), with the keys of a `[models.NAME]` section.
    ///
    /// # Errors
    ///
    /// A file that cannot be read or parsed, a policy that is not valid, or a model that the
    /// configuration has a section for already.
    pub fn add_model_file(&mut self, name: &str, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let own: PolicyFile = toml::from_str(&text).map_err(|e| {
            Error::Config(format!(
                "{}: {}",
                path.display(),
                e.to_string().trim().replace('\n', " ")
            ))
        })?;
        if self.file.models.contains_key(name) {
            return Err(Error::Config(format!(
                "model `{name}` has a policy in both the configuration's [models.{name}] and {}: \
                 keep one",
                path.display()
            )));
        }
        self.file.models.insert(name.to_string(), own);
        self.policy(name).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })?;
        Ok(())
    }

    /// Model names that have a `[models.NAME]` section.
    pub fn configured_models(&self) -> impl Iterator<Item = &str> {
        self.file.models.keys().map(String::as_str)
    }

    /// The secret of keyed mode.
    pub fn keyed_secret(&self) -> Option<[u8; 32]> {
        self.keyed_secret
    }

    /// The audit log's path and key, when auditing is on.
    pub fn audit(&self) -> Option<(&Path, &[u8; 32])> {
        self.audit.as_ref().map(|(p, k)| (p.as_path(), k))
    }

    /// The limits `[server]` sets (`max_body_mb`, `request_timeout_ms`, ...).
    pub fn limits(&self) -> &LimitOverrides {
        &self.limits
    }
}

/// Bytes in `mb` MiB.
pub fn mib(mb: usize) -> usize {
    mb.saturating_mul(1 << 20)
}

/// A limit that zero would disable by mistake.
trait Positive: Copy {
    fn is_zero(self) -> bool;
}

impl Positive for usize {
    fn is_zero(self) -> bool {
        self == 0
    }
}

impl Positive for Duration {
    fn is_zero(self) -> bool {
        Duration::is_zero(&self)
    }
}

/// The names of one limit on the command line and in `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct LimitKey {
    /// The command-line flag.
    pub flag: &'static str,
    /// The key of `[server]`.
    pub file: &'static str,
}

/// Declares [`Limits`] and [`LimitOverrides`] from one list: each limit's type, default, flag
/// and file key.
macro_rules! limits {
    ($($(#[doc = $doc:literal])* $name:ident: $ty:ty = $default:expr, $flag:literal, $key:literal;)*) => {
        /// The limits a server enforces, resolved from the command line, the configuration
        /// file's `[server]` section and the defaults, in that order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct Limits {
            $($(#[doc = $doc])* pub $name: $ty,)*
        }

        impl Default for Limits {
            fn default() -> Self {
                Limits { $($name: $default,)* }
            }
        }

        /// Limits given on the command line or in `[server]`; `None` leaves the next source's.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct LimitOverrides {
            $(#[doc = concat!("See [`Limits::", stringify!($name), "`].")] pub $name: Option<$ty>,)*
        }

        impl LimitOverrides {
            /// These overrides over `below`'s.
            pub fn or(&self, below: &LimitOverrides) -> LimitOverrides {
                LimitOverrides { $($name: self.$name.or(below.$name),)* }
            }

            /// The limits, with the defaults where nothing is given.
            pub fn resolve(&self) -> Limits {
                let d = Limits::default();
                Limits { $($name: self.$name.unwrap_or(d.$name),)* }
            }

            /// Refuses a limit of zero, naming it with `name`.
            fn check(&self, name: impl Fn(LimitKey) -> String) -> Result<()> {
                $(
                    if self.$name.is_some_and(Positive::is_zero) {
                        let key = LimitKey { flag: $flag, file: $key };
                        return Err(Error::Config(format!("{} must be at least 1", name(key))));
                    }
                )*
                Ok(())
            }
        }
    };
}

limits! {
    /// Largest request body in bytes (`--max-body-mb`, `max_body_mb`; default 64 MiB).
    max_body_bytes: usize = 64 << 20, "--max-body-mb", "max_body_mb";
    /// Time from a request's arrival to its answer, `504` past it (`--timeout-ms`,
    /// `request_timeout_ms`; default 30 s).
    request_timeout: Duration = Duration::from_secs(30), "--timeout-ms", "request_timeout_ms";
    /// Open connections at most: past it, connections idle for 100 ms or more are closed to
    /// make room, else the new one is answered `503` (`--max-connections`, `max_connections`;
    /// default 1024, fewer where the limit of open files is lower).
    max_connections: usize = 1024, "--max-connections", "max_connections";
    /// Time for a request's headers to arrive, from their first byte (`--header-timeout-ms`,
    /// `header_timeout_ms`; default 10 s).
    header_timeout: Duration = Duration::from_secs(10), "--header-timeout-ms", "header_timeout_ms";
    /// Time an idle connection stays open, from its last answer or its opening
    /// (`--keep-alive-ms`, `keep_alive_ms`; default 5 s).
    keep_alive: Duration = Duration::from_secs(5), "--keep-alive-ms", "keep_alive_ms";
    /// The work one request may cause, in member-samples: members times samples (samples in
    /// the per-sample modes); more is `413` before anything runs (`--max-work`, `max_work`;
    /// default 262,144).
    max_work: usize = 1 << 18, "--max-work", "max_work";
    /// Bytes of request bodies being received and decoded at once, over every connection;
    /// each body counts twice its length (`--receive-mb`, `receive_mb`, in MiB; default 512 MiB,
    /// at least twice the body limit). Bodies past it wait, until their deadline (then `503`).
    receive_bytes: usize = 512 << 20, "--receive-mb", "receive_mb";
    /// Bytes an answer may take, reckoned from the request before anything runs (each value at
    /// its widest); more is `413` (`--max-response-mb`, `max_response_mb`, in MiB; default
    /// 64 MiB).
    max_response_bytes: usize = 64 << 20, "--max-response-mb", "max_response_mb";
}

/// A 32-byte secret given inline or in a file, as 64 hex digits.
fn secret(
    key: &str,
    inline: Option<&str>,
    file: Option<&Path>,
    base: &Path,
) -> Result<Option<[u8; 32]>> {
    let text = match (inline, file) {
        (Some(_), Some(_)) => {
            return Err(Error::Config(format!(
                "give `{key}` or `{key}_file`, not both"
            )));
        }
        (Some(t), None) => t.to_string(),
        (None, Some(f)) => {
            let path = base.join(f);
            std::fs::read_to_string(&path).map_err(|source| Error::Io { path, source })?
        }
        (None, None) => return Ok(None),
    };
    parse_hex32(text.trim())
        .map(Some)
        .ok_or_else(|| Error::Config(format!("`{key}` must be 64 hex digits (32 bytes)")))
}

/// Parses 64 hex digits.
pub fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Everything `modeconn serve` is started with.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to listen on (port 0: any free port, logged at start).
    pub address: SocketAddr,
    /// Address of the gRPC service, when it is served (port 0: any free port, logged).
    pub grpc_address: Option<SocketAddr>,
    /// Served models: name and bundle path.
    pub models: Vec<(String, PathBuf)>,
    /// Where to run.
    pub device: Device,
    /// Path of libonnxruntime (default: `ORT_DYLIB_PATH`, then beside the executable).
    pub ort_library: Option<PathBuf>,
    /// Operator threads shared by every session (0: one per core).
    pub threads: usize,
    /// Samples gathered into one batch at most.
    pub max_batch: usize,
    /// How long the first request of a batch waits for others.
    pub max_delay: Duration,
    /// Requests waiting for a worker at most; more get `503`.
    pub queue: usize,
    /// Bytes of input waiting for a worker at most; more get `503`.
    pub queue_bytes: usize,
    /// Threads running batches.
    pub workers: usize,
    /// Whether idle operator threads spin (off by default: the HTTP threads need the cores).
    pub busy_wait: bool,
    /// Bytes of weights kept in materialised sessions per model.
    pub static_budget: usize,
    /// Limits given on the command line: each overrides the configuration file's.
    pub limits: LimitOverrides,
    /// The configuration file's content.
    pub config: Config,
}

impl Options {
    /// Options for these models with the defaults of `modeconn serve`.
    pub fn new(models: Vec<(String, PathBuf)>) -> Options {
        Options {
            address: SocketAddr::from(([127, 0, 0, 1], 8000)),
            grpc_address: None,
            models,
            device: Device::Auto,
            ort_library: None,
            threads: 0,
            max_batch: 32,
            max_delay: Duration::ZERO,
            queue: 256,
            queue_bytes: 1 << 30,
            workers: 2,
            busy_wait: false,
            static_budget: 1 << 30,
            limits: LimitOverrides::default(),
            config: Config::default(),
        }
    }

    /// The limits in force: the command line's over the configuration file's over the
    /// defaults.
    pub fn limits(&self) -> Limits {
        self.limits.or(self.config.limits()).resolve()
    }

    /// Checks the options against each other and the configuration.
    pub fn check(&self) -> Result<()> {
        if self.models.is_empty() {
            return Err(Error::Config("no bundle to serve".into()));
        }
        for (i, (name, _)) in self.models.iter().enumerate() {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(Error::Config(format!(
                    "model name `{name}`: use letters, digits, `-`, `_` and `.`"
                )));
            }
            if self.models[..i].iter().any(|(n, _)| n == name) {
                return Err(Error::Config(format!(
                    "two bundles are served as `{name}`: name them with NAME=PATH"
                )));
            }
        }
        for name in self.config.configured_models() {
            if !self.models.iter().any(|(n, _)| n == name) {
                return Err(Error::Config(format!(
                    "[models.{name}] names no served model (serving: {})",
                    self.models
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        for (what, v) in [
            ("--max-batch", self.max_batch),
            ("--queue", self.queue),
            ("--queue-mb", self.queue_bytes),
            ("--workers", self.workers),
        ] {
            if v == 0 {
                return Err(Error::Config(format!("{what} must be at least 1")));
            }
        }
        self.limits.check(|key| key.flag.to_string())?;
        let limits = self.limits();
        if limits.receive_bytes < 2 * limits.max_body_bytes {
            return Err(Error::Config(format!(
                "--receive-mb ({} MiB) must be at least twice --max-body-mb ({} MiB): a body \
                 counts twice its length while it is received",
                limits.receive_bytes >> 20,
                limits.max_body_bytes >> 20
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn empty_config_allows_every_mode_but_keyed() {
        let c = Config::parse("", Path::new(".")).unwrap();
        let p = c.policy("m").unwrap();
        assert_eq!(p.modes, vec![Mode::Ensemble, Mode::At, Mode::Randomized]);
        assert_eq!(p.default_mode, Mode::Ensemble);
        assert!(!p.return_point);
        assert_eq!((p.grid, p.randomized_grid), (5, 21));
    }

    #[test]
    fn model_sections_override_defaults() {
        let text = format!(
            "[server]\nkeyed_secret = \"{KEY}\"\n[defaults]\ngrid = 7\n\
             [models.a]\nmodes = [\"keyed\", \"randomized\"]\nreturn_point = true\n"
        );
        let c = Config::parse(&text, Path::new(".")).unwrap();
        let a = c.policy("a").unwrap();
        assert_eq!(a.modes, vec![Mode::Keyed, Mode::Randomized]);
        assert_eq!(a.default_mode, Mode::Keyed);
        assert!(a.return_point);
        assert_eq!(a.grid, 7);
        assert_eq!(a.keyed_quantum, None);
        assert_eq!(c.keyed_secret().unwrap()[31], 0x1f);
        let b = c.policy("b").unwrap();
        assert!(b.modes.contains(&Mode::Keyed) && !b.return_point);
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("[defaults]\nmodes = [\"keyed\"]\n", "needs `keyed_secret`"),
            ("[defaults]\nmodes = [\"sideways\"]\n", "sideways"),
            ("[defaults]\nmode = \"at\"\n", "mode"),
            (
                "[defaults]\nmodes = [\"at\"]\ndefault_mode = \"ensemble\"\n",
                "not one of its modes",
            ),
            ("[models.x]\ngrid = 1\n", "[models.x]"),
            ("[defaults]\nkeyed_quantum = 0.0\n", "keyed_quantum"),
            (
                "[models.x]\nkeyed_quantum = -1\n",
                "[models.x]: `keyed_quantum` is -1",
            ),
            ("[defaults]\nkeyed_quantum = 1e-50\n", "single precision"),
            ("[defaults]\nkeyed_quantum = inf\n", "keyed_quantum"),
            ("[server]\nkeyed_secret = \"abc\"\n", "64 hex digits"),
            ("[server]\naudit_log = \"a.jsonl\"\n", "needs `audit_key`"),
            ("[server]\nrequest_timeout_ms = 0\n", "request_timeout_ms"),
            (
                "[server]\nkeep_alive_ms = 0\n",
                "`keep_alive_ms` must be at least 1",
            ),
            ("[server]\nmax_connections = 0\n", "`max_connections`"),
            ("[server\n", "TOML"),
        ];
        for (text, want) in cases {
            let e = Config::parse(text, Path::new(".")).unwrap_err().to_string();
            assert!(
                e.contains(want) || (want == "TOML" && e.starts_with("configuration:")),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn options_refuse_duplicate_and_unknown_names() {
        let mut o = Options::new(vec![("a".into(), "x".into()), ("a".into(), "y".into())]);
        assert!(o.check().unwrap_err().to_string().contains("NAME=PATH"));
        o.models.pop();
        o.config = Config::parse("[models.b]\n", Path::new(".")).unwrap();
        assert!(o.check().unwrap_err().to_string().contains("[models.b]"));
        o.config = Config::default();
        o.max_batch = 0;
        assert!(o.check().unwrap_err().to_string().contains("--max-batch"));
        o.max_batch = 1;
        o.limits.header_timeout = Some(Duration::ZERO);
        assert!(
            o.check()
                .unwrap_err()
                .to_string()
                .contains("--header-timeout-ms")
        );
    }

    #[test]
    fn the_command_line_overrides_the_file_over_the_defaults() {
        let mut o = Options::new(vec![("a".into(), "x".into())]);
        o.config = Config::parse(
            "[server]\nkeep_alive_ms = 700\nmax_body_mb = 3\n",
            Path::new("."),
        )
        .unwrap();
        o.limits.max_body_bytes = Some(5);
        let l = o.limits();
        assert_eq!(l.keep_alive, Duration::from_millis(700));
        assert_eq!(l.max_body_bytes, 5);
        assert_eq!(l.header_timeout, Limits::default().header_timeout);
    }

    #[test]
    fn hex_round_trip() {
        use modeconn_runtime::fs::hex;
        let k = parse_hex32(KEY).unwrap();
        assert_eq!(hex(&k), KEY);
        assert!(parse_hex32(&KEY.replace('0', "g")).is_none());
    }
}
