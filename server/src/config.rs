//! Server configuration: command-line [`Options`] and the TOML [`Config`] that decides, per
//! model, which modes clients may ask for, the default one, and whether the point used may be
//! returned.
//!
//! ```toml
//! [server]
//! request_timeout_ms = 30000
//! max_body_mb = 64
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
}

/// `[server]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    request_timeout_ms: Option<u64>,
    max_body_mb: Option<usize>,
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
    request_timeout: Option<Duration>,
    max_body_bytes: Option<usize>,
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
        if s.request_timeout_ms == Some(0) {
            return Err(Error::Config(
                "`request_timeout_ms` must be at least 1".into(),
            ));
        }
        if s.max_body_mb == Some(0) {
            return Err(Error::Config("`max_body_mb` must be at least 1".into()));
        }
        let config = Config {
            request_timeout: s.request_timeout_ms.map(Duration::from_millis),
            max_body_bytes: s.max_body_mb.map(|mb| mb.saturating_mul(1 << 20)),
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
        Ok(policy)
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

    /// `request_timeout_ms`, when set.
    pub fn request_timeout(&self) -> Option<Duration> {
        self.request_timeout
    }

    /// `max_body_mb` in bytes, when set.
    pub fn max_body_bytes(&self) -> Option<usize> {
        self.max_body_bytes
    }
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
    /// Largest request body (overrides the configuration file).
    pub max_body_bytes: Option<usize>,
    /// Time a request may take before it is answered with `504` (overrides the file).
    pub request_timeout: Option<Duration>,
    /// The configuration file's content.
    pub config: Config,
}

impl Options {
    /// Options for these models with the defaults of `modeconn serve`.
    pub fn new(models: Vec<(String, PathBuf)>) -> Options {
        Options {
            address: SocketAddr::from(([127, 0, 0, 1], 8000)),
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
            max_body_bytes: None,
            request_timeout: None,
            config: Config::default(),
        }
    }

    /// The body limit in force.
    pub fn body_limit(&self) -> usize {
        self.max_body_bytes
            .or(self.config.max_body_bytes())
            .unwrap_or(64 << 20)
    }

    /// The request timeout in force.
    pub fn timeout(&self) -> Duration {
        self.request_timeout
            .or(self.config.request_timeout())
            .unwrap_or(Duration::from_secs(30))
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
            ("[server]\nkeyed_secret = \"abc\"\n", "64 hex digits"),
            ("[server]\naudit_log = \"a.jsonl\"\n", "needs `audit_key`"),
            ("[server]\nrequest_timeout_ms = 0\n", "request_timeout_ms"),
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
    }

    #[test]
    fn hex_round_trip() {
        use modeconn_runtime::fs::hex;
        let k = parse_hex32(KEY).unwrap();
        assert_eq!(hex(&k), KEY);
        assert!(parse_hex32(&KEY.replace('0', "g")).is_none());
    }
}
