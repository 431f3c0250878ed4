//! `hf:ORG/NAME[@REVISION]`: a model from the Hugging Face hub, through
//! hf-hub's blocking client and its cache (`HF_HUB_CACHE`, `HF_HOME`).
//!
//! Only the files driftui reads are fetched: `config.json`, the tokenizer
//! files, and the safetensors weights (one file, or the shards an index
//! names), all from the one commit the revision points at when we ask. A
//! file is checked (size, and SHA-256 for LFS files) once downloaded; a bad
//! one is removed from the cache, so nothing incomplete ever looks complete.
//! With no network, a complete cached copy is used.

use anyhow::{bail, Context, Result};
use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::api::Progress;
use hf_hub::{Cache, Repo, RepoType};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where and how to reach the hub.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Base URL (`HF_ENDPOINT`, default `https://huggingface.co`).
    pub endpoint: String,
    /// The hub cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    pub cache_dir: PathBuf,
    /// `HF_TOKEN`, else the token file `huggingface-cli login` wrote.
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE=1`: use the cache only.
    pub offline: bool,
    /// Report downloads on stderr.
    pub progress: bool,
}

impl HubOptions {
    /// Settings from the environment, as huggingface_hub reads them.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            let base = var("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| {
                std::env::home_dir()
                    .unwrap_or_else(|| PathBuf::from("."))
                    .join(".cache")
            });
            base.join("huggingface")
        });
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("hub"));
        let token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| {
                std::fs::read_to_string(home.join("token"))
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
            });
        let offline = matches!(
            var("HF_HUB_OFFLINE").as_deref(),
            Some("1") | Some("true") | Some("TRUE") | Some("yes")
        );
        Self {
            endpoint: var("HF_ENDPOINT")
                .map(|e| e.trim_end_matches('/').to_string())
                .unwrap_or_else(|| "https://huggingface.co".to_string()),
            cache_dir,
            token,
            offline,
            progress: true,
        }
    }
}

/// A parsed `ORG/NAME[@REVISION]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubModel {
    pub repo_id: String,
    pub revision: String,
}

impl HubModel {
    pub fn parse(spec: &str) -> Result<Self> {
        let (repo_id, revision) = match spec.split_once('@') {
            Some((r, rev)) => (r, rev),
            None => (spec, "main"),
        };
        let valid_part = |s: &str| {
            !s.is_empty()
                && !s.starts_with(['.', '-'])
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let parts: Vec<&str> = repo_id.split('/').collect();
        let ok = match parts.as_slice() {
            [name] => valid_part(name),
            [org, name] => valid_part(org) && valid_part(name),
            _ => false,
        };
        if !ok {
            bail!(
                "\"{repo_id}\" is not a hub model name; write hf:ORG/NAME or hf:ORG/NAME@REVISION \
                 (for example hf:meta-llama/Llama-3.2-1B-Instruct)"
            );
        }
        if revision.is_empty() || revision.contains("..") || revision.starts_with('/') {
            bail!("\"{revision}\" is not a revision (a branch, tag or commit hash)");
        }
        Ok(Self {
            repo_id: repo_id.to_string(),
            revision: revision.to_string(),
        })
    }

    fn folder(&self, cache_dir: &Path) -> PathBuf {
        cache_dir.join(Repo::model(self.repo_id.clone()).folder_name())
    }
}

/// The files of a model snapshot that driftui reads.
fn needed_files(siblings: &[String], repo: &str) -> Result<Vec<String>> {
    let has = |f: &str| siblings.iter().any(|s| s == f);
    if !has("config.json") {
        bail!("the hub repository {repo} has no config.json; it is not a transformers model");
    }
    if !has("tokenizer.json") {
        bail!(
            "the hub repository {repo} has no tokenizer.json (driftui reads fast tokenizers only)"
        );
    }
    let mut files = vec!["config.json".to_string(), "tokenizer.json".to_string()];
    for f in [
        "tokenizer_config.json",
        "generation_config.json",
        "chat_template.jinja",
    ] {
        if has(f) {
            files.push(f.to_string());
        }
    }
    if has("model.safetensors.index.json") {
        files.push("model.safetensors.index.json".into());
    } else if has("model.safetensors") {
        files.push("model.safetensors".into());
    } else if siblings
        .iter()
        .any(|s| s.ends_with(".bin") || s.ends_with(".pth") || s.ends_with(".pt"))
    {
        bail!(
            "the hub repository {repo} has PyTorch .bin weights only; driftui reads safetensors \
             (convert them, or pick a repository that has model.safetensors)"
        );
    } else {
        bail!(
            "the hub repository {repo} has no model.safetensors nor model.safetensors.index.json"
        );
    }
    Ok(files)
}

/// Shards named by a `model.safetensors.index.json`, sorted.
fn shards_of_index(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .with_context(|| format!("{} has no weight_map", path.display()))?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    files.sort();
    files.dedup();
    for f in &files {
        if f.contains("..") || f.starts_with('/') {
            bail!(
                "{} names the shard {f:?}, outside the model",
                path.display()
            );
        }
    }
    Ok(files)
}

/// Download (or find in the cache) the model's files; returns the snapshot
/// directory, a Hugging Face model directory.
pub fn fetch(spec: &str, opts: &HubOptions) -> Result<PathBuf> {
    let model = HubModel::parse(spec)?;
    if opts.offline {
        return cached_snapshot(&model, opts)?.with_context(|| {
            format!(
                "{}@{} is not (completely) in the hub cache {} and HF_HUB_OFFLINE is set",
                model.repo_id,
                model.revision,
                opts.cache_dir.display()
            )
        });
    }
    let repo = open_repo(
        opts,
        Repo::with_revision(
            model.repo_id.clone(),
            RepoType::Model,
            model.revision.clone(),
        ),
    )
    .map_err(|e| explain(e, &model, opts, None))?;
    let info = match repo.info() {
        Ok(info) => info,
        Err(e) => {
            let offline = is_transport(&e);
            let err = explain(e, &model, opts, None);
            if offline {
                if let Some(dir) = cached_snapshot(&model, opts)? {
                    eprintln!("driftui: {err:#}; using the copy in the hub cache");
                    return Ok(dir);
                }
            }
            return Err(err);
        }
    };
    let siblings: Vec<String> = info.siblings.iter().map(|s| s.rfilename.clone()).collect();
    let mut files = needed_files(&siblings, &model.repo_id)?;
    let snapshot = model
        .folder(&opts.cache_dir)
        .join("snapshots")
        .join(&info.sha);
    let mut i = 0;
    while i < files.len() {
        let file = files[i].clone();
        fetch_file(&repo, &model, opts, &snapshot, &file)?;
        if file == "model.safetensors.index.json" {
            let shards = shards_of_index(&snapshot.join(&file))?;
            for s in &shards {
                if !siblings.contains(s) {
                    bail!(
                        "the hub repository {} lacks the shard {s} that its model.safetensors.index.json names",
                        model.repo_id
                    );
                }
            }
            files.extend(shards);
        }
        i += 1;
    }
    write_ref(&model, opts, &info.sha)?;
    Ok(snapshot)
}

/// A dataset repository's Parquet files by configuration and split.
pub type DatasetLayout = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// The configurations and splits of a dataset repository, told from its
/// Parquet files' paths as the hub lays them out:
/// - `push_to_hub`: `data/{split}-00000-of-00001[-hash].parquet` (config
///   `default`), `{config}/{split}-00000-of-00003.parquet`;
/// - the hub's Parquet conversion (`@refs/convert/parquet`):
///   `{config}/{split}/0000.parquet`, `{config}/partial-{split}/0000.parquet`;
/// - plain files: `[data/]{split}.parquet`, `{config}/{split}.parquet`.
///
/// A README's `configs:` front matter is not read.
pub fn dataset_layout(files: &[String]) -> DatasetLayout {
    let mut out = DatasetLayout::new();
    for f in files {
        let Some(stem_path) = f.strip_suffix(".parquet") else {
            continue;
        };
        let mut parts: Vec<&str> = stem_path.split('/').collect();
        let stem = parts.pop().unwrap_or_default();
        let (split, dirs): (String, Vec<&str>) =
            if !stem.is_empty() && stem.chars().all(|c| c.is_ascii_digit()) && !parts.is_empty() {
                let split_dir = parts.pop().unwrap_or_default();
                let split = split_dir.strip_prefix("partial-").unwrap_or(split_dir);
                (split.to_string(), parts)
            } else {
                (shard_split(stem).to_string(), parts)
            };
        let dirs: Vec<&str> = match dirs.as_slice() {
            ["data", rest @ ..] => rest.to_vec(),
            d => d.to_vec(),
        };
        let config = if dirs.is_empty() {
            "default".to_string()
        } else {
            dirs.join("/")
        };
        out.entry(config)
            .or_default()
            .entry(split)
            .or_default()
            .push(f.clone());
    }
    for splits in out.values_mut() {
        for shards in splits.values_mut() {
            shards.sort();
        }
    }
    out
}

/// `train_prefs-00000-of-00001-3f1e…` → `train_prefs`; any other name is
/// its own split.
fn shard_split(stem: &str) -> &str {
    let b = stem.as_bytes();
    // The first "-NNNNN-of-NNNNN" (digits of any length).
    let mut i = 0;
    while let Some(p) = stem[i..].find('-') {
        let at = i + p;
        let rest = &stem[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with("-of-") {
            let after = &rest[digits + 4..];
            let d2 = after.bytes().take_while(u8::is_ascii_digit).count();
            if d2 > 0 && (after.len() == d2 || after.as_bytes()[d2] == b'-') && at > 0 {
                return &stem[..at];
            }
        }
        i = at + 1;
        if i >= b.len() {
            break;
        }
    }
    stem
}

/// Choose a split of a configuration from a layout; an unknown one is an
/// error listing those there are.
pub fn select_split<'a>(
    layout: &'a DatasetLayout,
    repo: &str,
    config: Option<&str>,
    split: Option<&str>,
) -> Result<&'a [String]> {
    let listing = |names: Vec<&String>| {
        names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if layout.is_empty() {
        bail!(
            "the hub dataset {repo} has no Parquet files at this revision; for a dataset \
             published in another format, use the hub's Parquet conversion: \
             hf-dataset:{repo}@refs/convert/parquet"
        );
    }
    let (config, splits) = match config {
        Some(c) => match layout.get_key_value(c) {
            Some(kv) => kv,
            None => bail!(
                "the hub dataset {repo} has no config \"{c}\"; its configs are {}",
                listing(layout.keys().collect())
            ),
        },
        None if layout.len() == 1 => layout.iter().next().expect("one config"),
        None => match layout.get_key_value("default") {
            Some(kv) => kv,
            None => bail!(
                "the hub dataset {repo} has several configs ({}); choose one with `config = \"...\"` in the phase",
                listing(layout.keys().collect())
            ),
        },
    };
    let want = split.unwrap_or("train");
    match splits.get(want) {
        Some(files) => Ok(files.as_slice()),
        None => bail!(
            "the hub dataset {repo} (config \"{config}\") has no split \"{want}\"; its splits are {}{}",
            listing(splits.keys().collect()),
            if split.is_none() { " (set `split = \"...\"` in the phase)" } else { "" }
        ),
    }
}

/// `ORG/NAME[@REVISION]` of a dataset: the Parquet shards of one split of
/// one configuration, downloaded into the hub cache (or found there) and
/// checked as model files are. Returns their local paths, in order.
pub fn fetch_dataset(
    spec: &str,
    config: Option<&str>,
    split: Option<&str>,
    opts: &HubOptions,
) -> Result<Vec<PathBuf>> {
    let ds = HubModel::parse(spec).map_err(|_| {
        anyhow::anyhow!(
            "\"{spec}\" is not a hub dataset name; write hf-dataset:ORG/NAME or \
             hf-dataset:ORG/NAME@REVISION (for example hf-dataset:HuggingFaceH4/ultrafeedback_binarized)"
        )
    })?;
    let folder = opts
        .cache_dir
        .join(Repo::new(ds.repo_id.clone(), RepoType::Dataset).folder_name());
    if opts.offline {
        return cached_dataset(&ds, &folder, config, split)?.with_context(|| {
            format!(
                "the dataset {}@{} is not in the hub cache {} and HF_HUB_OFFLINE is set",
                ds.repo_id,
                ds.revision,
                opts.cache_dir.display()
            )
        });
    }
    let repo = open_repo(
        opts,
        Repo::with_revision(ds.repo_id.clone(), RepoType::Dataset, ds.revision.clone()),
    )
    .map_err(|e| explain(e, &ds, opts, None))?;
    let info = match repo.info() {
        Ok(info) => info,
        Err(e) => {
            let offline = is_transport(&e);
            let err = explain(e, &ds, opts, None).context(format!("the dataset {}", ds.repo_id));
            if offline {
                if let Some(files) = cached_dataset(&ds, &folder, config, split)? {
                    eprintln!("driftui: {err:#}; using the copy in the hub cache");
                    return Ok(files);
                }
            }
            return Err(err);
        }
    };
    let siblings: Vec<String> = info.siblings.iter().map(|s| s.rfilename.clone()).collect();
    let layout = dataset_layout(&siblings);
    let files = select_split(&layout, &ds.repo_id, config, split)?.to_vec();
    let snapshot = folder.join("snapshots").join(&info.sha);
    for f in &files {
        if f.contains("..") || f.starts_with('/') {
            bail!(
                "the hub dataset {} names the file {f:?}, outside it",
                ds.repo_id
            );
        }
        fetch_file(&repo, &ds, opts, &snapshot, f)?;
    }
    if ds.revision != info.sha {
        let p = folder.join("refs").join(&ds.revision);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, &info.sha).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(files.iter().map(|f| snapshot.join(f)).collect())
}

/// A split's shards from the cache alone, when its snapshot is there.
fn cached_dataset(
    ds: &HubModel,
    folder: &Path,
    config: Option<&str>,
    split: Option<&str>,
) -> Result<Option<Vec<PathBuf>>> {
    let commit = match std::fs::read_to_string(folder.join("refs").join(&ds.revision)) {
        Ok(c) => c.trim().to_string(),
        Err(_) => ds.revision.clone(),
    };
    let dir = folder.join("snapshots").join(commit);
    if !dir.is_dir() {
        return Ok(None);
    }
    fn walk(d: &Path, base: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, base, out);
            } else if let Ok(rel) = p.strip_prefix(base) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut files = Vec::new();
    walk(&dir, &dir, &mut files);
    let layout = dataset_layout(&files);
    let picked = select_split(&layout, &ds.repo_id, config, split)?;
    Ok(Some(picked.iter().map(|f| dir.join(f)).collect()))
}

/// Put one file of the snapshot in place, downloading it unless cached.
fn fetch_file(
    repo: &hf_hub::api::sync::ApiRepo,
    model: &HubModel,
    opts: &HubOptions,
    snapshot: &Path,
    file: &str,
) -> Result<()> {
    let want = snapshot.join(file);
    if want.is_file() {
        return Ok(());
    }
    let progress = Report::new(opts.progress, &model.repo_id);
    let got = repo
        .download_with_progress(file, progress.clone())
        .map_err(|e| explain(e, model, opts, Some(file)))?;
    let expected = progress.expected();
    if let Err(e) = verify(&got, expected) {
        discard(&got);
        return Err(e.context(format!(
            "the download of {file} from {} was damaged and has been removed from the cache; run again",
            model.repo_id
        )));
    }
    if got != want {
        // The revision moved to a new commit between our two requests.
        bail!(
            "{}@{} changed while downloading ({file} came from another commit); run again",
            model.repo_id,
            model.revision
        );
    }
    Ok(())
}

/// Check a downloaded file's size, and its SHA-256 when the blob is named by one.
fn verify(path: &Path, expected: Option<u64>) -> Result<()> {
    let blob = std::fs::canonicalize(path)?;
    let size = std::fs::metadata(&blob)?.len();
    if let Some(n) = expected {
        if size != n {
            bail!("{size} bytes arrived, the hub announced {n}");
        }
    }
    let name = blob.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()) {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        let mut f = std::fs::File::open(&blob)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if !digest.eq_ignore_ascii_case(name) {
            bail!("its SHA-256 is {digest}, the hub announced {name}");
        }
    }
    Ok(())
}

/// Remove a file and the blob it links to.
fn discard(pointer: &Path) {
    if let Ok(blob) = std::fs::canonicalize(pointer) {
        let _ = std::fs::remove_file(blob);
    }
    let _ = std::fs::remove_file(pointer);
}

fn write_ref(model: &HubModel, opts: &HubOptions, sha: &str) -> Result<()> {
    if model.revision == sha {
        return Ok(());
    }
    let p = model
        .folder(&opts.cache_dir)
        .join("refs")
        .join(&model.revision);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&p, sha).with_context(|| format!("cannot write {}", p.display()))
}

/// The snapshot directory of a complete cached copy, if there is one.
fn cached_snapshot(model: &HubModel, opts: &HubOptions) -> Result<Option<PathBuf>> {
    let folder = model.folder(&opts.cache_dir);
    let commit = match std::fs::read_to_string(folder.join("refs").join(&model.revision)) {
        Ok(c) => c.trim().to_string(),
        Err(_) => model.revision.clone(),
    };
    let dir = folder.join("snapshots").join(commit);
    if !dir.join("config.json").is_file() || !dir.join("tokenizer.json").is_file() {
        return Ok(None);
    }
    let index = dir.join("model.safetensors.index.json");
    let complete = if index.is_file() {
        shards_of_index(&index)?
            .iter()
            .all(|s| dir.join(s).is_file())
    } else {
        dir.join("model.safetensors").is_file()
    };
    Ok(complete.then_some(dir))
}

fn is_transport(e: &ApiError) -> bool {
    match e {
        ApiError::RequestError(r) => matches!(**r, ureq2::Error::Transport(_)),
        ApiError::TooManyRetries(inner) => is_transport(inner),
        _ => false,
    }
}

/// Turn a client error into what the user must do about it.
/// The hub client for one repository (a model or a dataset), with the
/// user's cache, endpoint and token.
fn open_repo(opts: &HubOptions, repo: Repo) -> std::result::Result<ApiRepo, ApiError> {
    let api = ApiBuilder::from_cache(Cache::new(opts.cache_dir.clone()))
        .with_endpoint(opts.endpoint.clone())
        .with_token(opts.token.clone())
        .with_progress(false)
        .build()?;
    Ok(api.repo(repo))
}

fn explain(e: ApiError, model: &HubModel, opts: &HubOptions, file: Option<&str>) -> anyhow::Error {
    let repo = &model.repo_id;
    let what = match file {
        Some(f) => format!("{f} of {repo}"),
        None => repo.clone(),
    };
    let status = match &e {
        ApiError::RequestError(r) => match &**r {
            ureq2::Error::Status(code, resp) => Some((
                *code,
                resp.header("x-error-code").map(str::to_string),
                resp.header("x-error-message").map(str::to_string),
            )),
            ureq2::Error::Transport(t) => {
                return anyhow::anyhow!(
                "cannot reach the hub at {} for {what}: {t}. Check the network connection, or set \
                     HF_ENDPOINT to a mirror (nothing was downloaded)",
                opts.endpoint
            )
            }
        },
        _ => None,
    };
    let Some((code, kind, message)) = status else {
        if let ApiError::IoError(io) = &e {
            return anyhow::anyhow!(
                "the download of {what} from {} was interrupted ({io}); the partial file stays in \
                 the cache under a .part name and a new run resumes it",
                opts.endpoint
            );
        }
        return anyhow::anyhow!("downloading {what} from {} failed: {e}", opts.endpoint);
    };
    let server = message
        .map(|m| format!(" (the hub said: {m})"))
        .unwrap_or_default();
    let token_hint = if opts.token.is_some() {
        "the token in HF_TOKEN does not have access to it"
    } else {
        "no HF_TOKEN is set"
    };
    match (code, kind.as_deref()) {
        (_, Some("GatedRepo")) | (403, _) => anyhow::anyhow!(
            "{repo} is a gated model and {token_hint}{server}. To get access: open \
             {}/{repo}, log in and accept its license, wait for the approval, then create a \
             read token at {}/settings/tokens and set it as HF_TOKEN",
            opts.endpoint,
            opts.endpoint
        ),
        (_, Some("RepoNotFound")) | (404, None) if file.is_none() => anyhow::anyhow!(
            "the model {repo} does not exist on {} (or it is private and {token_hint}); check the name{server}",
            opts.endpoint
        ),
        (_, Some("RevisionNotFound")) => anyhow::anyhow!(
            "{repo} has no revision \"{}\"{server}",
            model.revision
        ),
        (_, Some("EntryNotFound")) | (404, _) => {
            anyhow::anyhow!("{what} is not on the hub{server}")
        }
        (401, _) => anyhow::anyhow!(
            "the hub refused {what} (401 Unauthorized): {repo} does not exist, or it is private or \
             gated and {token_hint}{server}. For a gated model: open {}/{repo}, accept its \
             license, and set HF_TOKEN to a read token from {}/settings/tokens",
            opts.endpoint,
            opts.endpoint
        ),
        (c, _) => anyhow::anyhow!("the hub answered {c} for {what}{server}"),
    }
}

/// Download progress on stderr: a line that updates in place on a terminal,
/// a line per quarter otherwise. Remembers the size the hub announced.
#[derive(Clone)]
struct Report {
    show: bool,
    repo: String,
    state: Arc<Mutex<ReportState>>,
}

struct ReportState {
    file: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_shown: Option<Instant>,
    quarter: u64,
}

impl Report {
    fn new(show: bool, repo: &str) -> Self {
        Self {
            show,
            repo: repo.to_string(),
            state: Arc::new(Mutex::new(ReportState {
                file: String::new(),
                total: None,
                done: 0,
                started: Instant::now(),
                last_shown: None,
                quarter: 0,
            })),
        }
    }

    fn expected(&self) -> Option<u64> {
        self.state.lock().ok().and_then(|s| s.total)
    }

    fn line(&self, s: &ReportState) -> String {
        let total = s.total.unwrap_or(0);
        let secs = s.started.elapsed().as_secs_f64().max(1e-3);
        let pct = if total > 0 {
            100.0 * s.done as f64 / total as f64
        } else {
            100.0
        };
        format!(
            "downloading {} {}: {pct:5.1}% of {} ({}/s)",
            self.repo,
            s.file,
            human(total),
            human((s.done as f64 / secs) as u64)
        )
    }
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

impl Progress for Report {
    fn init(&mut self, size: usize, filename: &str) {
        if let Ok(mut s) = self.state.lock() {
            // hf-hub calls init again when it resumes; keep the first start.
            if s.file != filename {
                s.started = Instant::now();
                s.done = 0;
            }
            s.file = filename.to_string();
            s.total = Some(size as u64);
        }
    }

    fn update(&mut self, size: usize) {
        if !self.show {
            if let Ok(mut s) = self.state.lock() {
                s.done += size as u64;
            }
            return;
        }
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        s.done += size as u64;
        let tty = std::io::stderr().is_terminal();
        let total = s.total.unwrap_or(0).max(1);
        let quarter = 4 * s.done / total;
        let due = if tty {
            s.last_shown.is_none_or(|t| t.elapsed().as_millis() >= 250)
        } else {
            quarter > s.quarter
        };
        if due {
            s.last_shown = Some(Instant::now());
            s.quarter = quarter;
            let line = self.line(&s);
            let mut err = std::io::stderr().lock();
            if tty {
                let _ = write!(err, "\r{line}\x1b[K");
            } else {
                let _ = writeln!(err, "{line}");
            }
        }
    }

    fn finish(&mut self) {
        if !self.show {
            return;
        }
        if let Ok(s) = self.state.lock() {
            let line = self.line(&s);
            let mut err = std::io::stderr().lock();
            if std::io::stderr().is_terminal() {
                let _ = writeln!(err, "\r{line}\x1b[K");
            } else if s.quarter < 4 {
                let _ = writeln!(err, "{line}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_parse_or_are_refused() {
        let m = HubModel::parse("meta-llama/Llama-3.2-1B-Instruct@v1.0").unwrap();
        assert_eq!(m.repo_id, "meta-llama/Llama-3.2-1B-Instruct");
        assert_eq!(m.revision, "v1.0");
        assert_eq!(HubModel::parse("gpt2").unwrap().revision, "main");
        for bad in [
            "",
            "a/b/c",
            "org/",
            "/name",
            "org/na me",
            "org/name@",
            "../x",
        ] {
            let e = HubModel::parse(bad).unwrap_err().to_string();
            assert!(e.contains("not a"), "{bad}: {e}");
        }
    }

    #[test]
    fn dataset_layouts_as_the_hub_writes_them() {
        let files: Vec<String> = [
            "README.md",
            "data/train_prefs-00000-of-00001.parquet",
            "data/test_prefs-00000-of-00001-3f1e0c2a.parquet",
            "data/train-00000-of-00002.parquet",
            "data/train-00001-of-00002.parquet",
            "helpful-base/train/0000.parquet",
            "helpful-base/partial-test/0001.parquet",
            "harmless/validation.parquet",
            "other/file.jsonl.gz",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let l = dataset_layout(&files);
        assert_eq!(
            l.keys().collect::<Vec<_>>(),
            ["default", "harmless", "helpful-base"]
        );
        assert_eq!(
            l["default"].keys().collect::<Vec<_>>(),
            ["test_prefs", "train", "train_prefs"]
        );
        assert_eq!(l["default"]["train"].len(), 2);
        assert_eq!(
            l["helpful-base"].keys().collect::<Vec<_>>(),
            ["test", "train"]
        );
        assert_eq!(l["harmless"]["validation"], ["harmless/validation.parquet"]);
        assert_eq!(shard_split("a-b-00001-of-00002-x"), "a-b");
        assert_eq!(shard_split("train-0001"), "train-0001");
        // Several configs and none chosen: "default" is taken.
        let got = select_split(&l, "o/d", None, Some("train_prefs")).unwrap();
        assert_eq!(got, ["data/train_prefs-00000-of-00001.parquet"]);
        let e = select_split(&l, "o/d", Some("helpful"), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("has no config \"helpful\"; its configs are \"default\", \"harmless\", \"helpful-base\""),
            "{e}"
        );
        let e = select_split(&l, "o/d", Some("helpful-base"), Some("valid"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("has no split \"valid\"; its splits are \"test\", \"train\""),
            "{e}"
        );
    }

    #[test]
    fn repositories_without_safetensors_are_refused_by_name() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let e = needed_files(
            &s(&["config.json", "tokenizer.json", "pytorch_model.bin"]),
            "o/m",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(".bin weights only"), "{e}");
        let f = needed_files(
            &s(&[
                "config.json",
                "tokenizer.json",
                "model.safetensors.index.json",
                "README.md",
            ]),
            "o/m",
        )
        .unwrap();
        assert_eq!(
            f,
            [
                "config.json",
                "tokenizer.json",
                "model.safetensors.index.json"
            ]
        );
    }
}
