//! `hf:` sources against a loopback server that speaks the hub's URL layout
//! (`/api/models/{repo}/revision/{rev}`, `/{repo}/resolve/{rev}/{file}` with
//! the headers the hub sends), driven by the real hf-hub client.

use crate::common;

use candle_core::Tensor;
use common::{logits, max_diff};
use driftui::model::hub::{fetch, HubOptions};
use driftui::model::source::load_dir;
use driftui::model::{load_model, LoadOptions, LoadedModel};
use sha2::Digest;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One file a fake repository serves.
#[derive(Clone)]
struct File {
    bytes: Vec<u8>,
    /// Serve only this many bytes (a dropped connection).
    cut_at: Option<usize>,
    /// Serve these bytes instead (same length, other content).
    corrupt: bool,
    /// Large files are LFS files: their etag is the SHA-256 of the content.
    lfs: bool,
}

#[derive(Clone)]
enum Access {
    Open,
    /// Files need a token that has been granted access.
    Gated {
        granted: String,
    },
}

#[derive(Clone)]
struct FakeRepo {
    sha: String,
    files: BTreeMap<String, File>,
    access: Access,
}

#[derive(Default)]
struct Hub {
    repos: BTreeMap<String, FakeRepo>,
    /// Paths requested, for asserting what was downloaded.
    log: Vec<String>,
}

struct Server {
    url: String,
    hub: Arc<Mutex<Hub>>,
}

impl Server {
    fn start(hub: Hub) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hub = Arc::new(Mutex::new(hub));
        let h = hub.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let h = h.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &h);
                });
            }
        });
        Server { url, hub }
    }

    fn requests(&self, needle: &str) -> usize {
        let hub = self.hub.lock().unwrap();
        hub.log.iter().filter(|p| p.contains(needle)).count()
    }
}

fn respond(
    s: &mut TcpStream,
    code: u16,
    headers: &[(&str, String)],
    body: &[u8],
    len: Option<usize>,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        206 => "Partial Content",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Other",
    };
    let mut head = format!("HTTP/1.1 {code} {reason}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\n\r\n",
        len.unwrap_or(body.len())
    ));
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    s.flush()
}

fn serve(mut stream: TcpStream, hub: &Mutex<Hub>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let token = headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::to_string);
    let (repos, _) = {
        let mut h = hub.lock().unwrap();
        h.log.push(path.clone());
        (h.repos.clone(), ())
    };
    let not_found = |s: &mut TcpStream| {
        // The real hub answers 401 for a repository it will not show.
        respond(
            s,
            401,
            &[
                ("X-Error-Code", "RepoNotFound".into()),
                ("X-Error-Message", "Repository not found".into()),
            ],
            b"{\"error\":\"Repository not found\"}",
            None,
        )
    };
    // Datasets live under `datasets/ORG/NAME` (as their resolve URLs do).
    let api = path
        .strip_prefix("/api/models/")
        .map(|r| (r, ""))
        .or_else(|| {
            path.strip_prefix("/api/datasets/")
                .map(|r| (r, "datasets/"))
        });
    if let Some((rest, kind)) = api {
        let Some((repo, rev)) = rest.split_once("/revision/") else {
            return not_found(&mut stream);
        };
        let Some(r) = repos.get(&format!("{kind}{repo}")) else {
            return not_found(&mut stream);
        };
        if rev != "main" && rev != r.sha {
            return respond(
                &mut stream,
                404,
                &[("X-Error-Code", "RevisionNotFound".into())],
                b"{}",
                None,
            );
        }
        let siblings: Vec<serde_json::Value> = r
            .files
            .keys()
            .map(|f| serde_json::json!({ "rfilename": f }))
            .collect();
        let body = serde_json::json!({ "id": repo, "sha": r.sha, "siblings": siblings });
        return respond(
            &mut stream,
            200,
            &[("Content-Type", "application/json".into())],
            body.to_string().as_bytes(),
            None,
        );
    }
    // /{org}/{name}/resolve/{rev}/{file}
    let Some((repo, rest)) = path.trim_start_matches('/').split_once("/resolve/") else {
        return not_found(&mut stream);
    };
    let Some(r) = repos.get(repo) else {
        return not_found(&mut stream);
    };
    let Some((_rev, file)) = rest.split_once('/') else {
        return not_found(&mut stream);
    };
    if let Access::Gated { granted } = &r.access {
        match token {
            None => {
                return respond(
                    &mut stream,
                    401,
                    &[
                        ("X-Error-Code", "GatedRepo".into()),
                        (
                            "X-Error-Message",
                            format!("Access to model {repo} is restricted. You must have access to it and be authenticated to access it. Please log in."),
                        ),
                    ],
                    b"{}",
                    None,
                )
            }
            Some(t) if &t != granted => {
                return respond(
                    &mut stream,
                    403,
                    &[
                        ("X-Error-Code", "GatedRepo".into()),
                        (
                            "X-Error-Message",
                            format!("Access to model {repo} is restricted and you are not in the authorized list."),
                        ),
                    ],
                    b"{}",
                    None,
                )
            }
            Some(_) => {}
        }
    }
    let Some(f) = r.files.get(file) else {
        return respond(
            &mut stream,
            404,
            &[("X-Error-Code", "EntryNotFound".into())],
            b"{}",
            None,
        );
    };
    let total = f.bytes.len();
    let (start, end) = match headers.get("range").and_then(|r| r.strip_prefix("bytes=")) {
        Some(r) => {
            let (a, b) = r.split_once('-').unwrap_or((r, ""));
            let a: usize = a.parse().unwrap_or(0);
            let b: usize = if b.is_empty() {
                total - 1
            } else {
                b.parse().unwrap_or(total - 1)
            };
            (a, b.min(total - 1))
        }
        None => (0, total - 1),
    };
    let etag = if f.lfs {
        sha256_hex(&f.bytes)
    } else {
        // A git blob id (40 hex digits) for small files.
        sha256_hex(&f.bytes)[..40].to_string()
    };
    let mut body = if f.corrupt {
        f.bytes.iter().map(|b| b ^ 0x5a).collect::<Vec<u8>>()
    } else {
        f.bytes.clone()
    };
    body = body[start..=end].to_vec();
    let announced = body.len();
    if let (Some(cut), true) = (f.cut_at, end > 0) {
        body.truncate(cut.saturating_sub(start));
    }
    let etag_header = if f.lfs { "X-Linked-Etag" } else { "ETag" };
    respond(
        &mut stream,
        206,
        &[
            (etag_header, format!("\"{etag}\"")),
            ("X-Repo-Commit", r.sha.clone()),
            ("Content-Range", format!("bytes {start}-{end}/{total}")),
        ],
        &body,
        Some(announced),
    )
}

fn sha256_hex(b: &[u8]) -> String {
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// The built-in tiny model as a hub repository: config, tokenizer, and its
/// weights in two shards with an index (or one file).
fn tiny_repo(sharded: bool) -> (LoadedModel, FakeRepo) {
    let model = load_model("builtin:tiny", &LoadOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut files = BTreeMap::new();
    let small = |bytes: Vec<u8>| File {
        bytes,
        cut_at: None,
        corrupt: false,
        lfs: false,
    };
    files.insert(
        "config.json".to_string(),
        small(serde_json::to_vec_pretty(&model.cfg.to_hf_json()).unwrap()),
    );
    files.insert(
        "tokenizer.json".to_string(),
        small(model.tokenizer_files.tokenizer_json.clone().into_bytes()),
    );
    files.insert(
        "tokenizer_config.json".to_string(),
        small(serde_json::to_vec(&model.tokenizer_files.tokenizer_config).unwrap()),
    );
    files.insert("README.md".to_string(), small(b"# tiny".to_vec()));
    let lfs = |p: &Path| File {
        bytes: std::fs::read(p).unwrap(),
        cut_at: None,
        corrupt: false,
        lfs: true,
    };
    if sharded {
        let names: Vec<&String> = model.weights.tensors.keys().collect();
        let half = names.len() / 2;
        let mut index = serde_json::Map::new();
        for (i, part) in [&names[..half], &names[half..]].iter().enumerate() {
            let shard = format!("model-{:05}-of-00002.safetensors", i + 1);
            let tensors: BTreeMap<String, Tensor> = part
                .iter()
                .map(|n| ((*n).clone(), model.weights.tensors[*n].clone()))
                .collect();
            let p = dir.path().join(&shard);
            driftui::model::weights::save_tensors(&tensors, &p).unwrap();
            for n in part.iter() {
                index.insert((*n).clone(), serde_json::json!(shard));
            }
            files.insert(shard, lfs(&p));
        }
        let idx = serde_json::json!({ "metadata": {}, "weight_map": index });
        files.insert(
            "model.safetensors.index.json".to_string(),
            small(serde_json::to_vec_pretty(&idx).unwrap()),
        );
    } else {
        let p = dir.path().join("model.safetensors");
        model.weights.save_safetensors(&p).unwrap();
        files.insert("model.safetensors".to_string(), lfs(&p));
    }
    let repo = FakeRepo {
        sha: "0123456789abcdef0123456789abcdef01234567".into(),
        files,
        access: Access::Open,
    };
    (model, repo)
}

fn options(server: &Server, cache: &Path, token: Option<&str>) -> HubOptions {
    HubOptions {
        endpoint: server.url.clone(),
        cache_dir: cache.to_path_buf(),
        token: token.map(str::to_string),
        offline: false,
        progress: false,
    }
}

/// Every file under the cache, relative, with `.part`/`.lock` leftovers.
fn cache_files(cache: &Path) -> Vec<String> {
    fn walk(d: &Path, base: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                walk(&p, base, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(cache, cache, &mut out);
    out.sort();
    out
}

#[test]
fn sharded_model_downloads_into_the_cache_and_loads_offline_later() {
    let (model, repo) = tiny_repo(true);
    let mut hub = Hub::default();
    hub.repos
        .insert("driftui-test/tiny-sharded".into(), repo.clone());
    let server = Server::start(hub);
    let cache = tempfile::tempdir().unwrap();
    let dir = fetch(
        "driftui-test/tiny-sharded",
        &options(&server, cache.path(), None),
    )
    .unwrap();
    assert!(dir.ends_with(format!("snapshots/{}", repo.sha)), "{dir:?}");
    // The hub's cache layout: blobs, refs/main, snapshots/<sha>/<file> links.
    let r = cache.path().join("models--driftui-test--tiny-sharded");
    assert_eq!(
        std::fs::read_to_string(r.join("refs/main")).unwrap().trim(),
        repo.sha
    );
    for f in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        let p = dir.join(f);
        assert!(p.is_symlink(), "{f} is not a link into blobs/");
        assert_eq!(
            std::fs::read(&p).unwrap(),
            repo.files[f].bytes,
            "{f} differs from what the server holds"
        );
    }
    assert!(
        !dir.join("README.md").exists(),
        "fetched a file it does not need"
    );
    let loaded = load_dir(
        &dir,
        "hf:driftui-test/tiny-sharded",
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(loaded.cfg, model.cfg);
    assert_eq!(max_diff(&logits(&loaded), &logits(&model)), 0.0);

    // A second fetch downloads nothing: one info request, no file requests.
    let before = server.requests("/resolve/");
    fetch(
        "driftui-test/tiny-sharded",
        &options(&server, cache.path(), None),
    )
    .unwrap();
    assert_eq!(server.requests("/resolve/"), before);

    // With the hub unreachable the cached copy is used.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut opts = options(&server, cache.path(), None);
    opts.endpoint = dead_url;
    assert_eq!(fetch("driftui-test/tiny-sharded", &opts).unwrap(), dir);
    opts.offline = true;
    assert_eq!(fetch("driftui-test/tiny-sharded", &opts).unwrap(), dir);
    assert!(cache_files(cache.path())
        .iter()
        .all(|f| !f.ends_with(".part")));
}

#[test]
fn single_file_model_at_a_revision() {
    let (model, repo) = tiny_repo(false);
    let sha = repo.sha.clone();
    let mut hub = Hub::default();
    hub.repos.insert("driftui-test/tiny".into(), repo);
    let server = Server::start(hub);
    let cache = tempfile::tempdir().unwrap();
    let dir = fetch(
        &format!("driftui-test/tiny@{sha}"),
        &options(&server, cache.path(), None),
    )
    .unwrap();
    let loaded = load_dir(&dir, "hf:driftui-test/tiny", &LoadOptions::default()).unwrap();
    assert_eq!(max_diff(&logits(&loaded), &logits(&model)), 0.0);
    let err = fetch(
        "driftui-test/tiny@no-such-branch",
        &options(&server, cache.path(), None),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("has no revision \"no-such-branch\""),
        "{err:#}"
    );
}

#[test]
fn gated_model_says_how_to_get_access() {
    let (_, mut repo) = tiny_repo(false);
    repo.access = Access::Gated {
        granted: "hf_granted".into(),
    };
    let mut hub = Hub::default();
    hub.repos.insert("meta-llama/Gated-1B".into(), repo.clone());
    let server = Server::start(hub);
    let cache = tempfile::tempdir().unwrap();
    let err = fetch("meta-llama/Gated-1B", &options(&server, cache.path(), None)).unwrap_err();
    let msg = format!("{err:#}");
    for want in [
        "gated model",
        "no HF_TOKEN is set",
        "accept its license",
        "set it as HF_TOKEN",
        &format!("{}/meta-llama/Gated-1B", server.url),
    ] {
        assert!(msg.contains(want), "missing {want:?} in: {msg}");
    }
    let err = fetch(
        "meta-llama/Gated-1B",
        &options(&server, cache.path(), Some("hf_other")),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("the token in HF_TOKEN does not have access"),
        "{err:#}"
    );
    // Nothing looks downloaded.
    assert!(!cache
        .path()
        .join("models--meta-llama--Gated-1B/snapshots")
        .join(&repo.sha)
        .join("config.json")
        .exists());
    // With the granted token it downloads.
    fetch(
        "meta-llama/Gated-1B",
        &options(&server, cache.path(), Some("hf_granted")),
    )
    .unwrap();
}

#[test]
fn missing_repo_and_no_network_are_clear() {
    let server = Server::start(Hub::default());
    let cache = tempfile::tempdir().unwrap();
    let err = fetch("nobody/nothing", &options(&server, cache.path(), None)).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("the model nobody/nothing does not exist"),
        "{msg}"
    );
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut opts = options(&server, cache.path(), None);
    opts.endpoint = url.clone();
    let msg = format!("{:#}", fetch("org/model", &opts).unwrap_err());
    assert!(
        msg.contains(&format!("cannot reach the hub at {url}")) && msg.contains("HF_ENDPOINT"),
        "{msg}"
    );
    opts.offline = true;
    let msg = format!("{:#}", fetch("org/model", &opts).unwrap_err());
    assert!(msg.contains("HF_HUB_OFFLINE"), "{msg}");
}

#[test]
fn broken_downloads_leave_nothing_that_looks_complete() {
    for (case, cut, corrupt) in [("cut", true, false), ("corrupt", false, true)] {
        let (_, mut repo) = tiny_repo(true);
        let shard = "model-00002-of-00002.safetensors";
        let f = repo.files.get_mut(shard).unwrap();
        if cut {
            f.cut_at = Some(f.bytes.len() / 2);
        }
        f.corrupt = corrupt;
        let mut hub = Hub::default();
        hub.repos.insert("org/broken".into(), repo.clone());
        let server = Server::start(hub);
        let cache = tempfile::tempdir().unwrap();
        let err = fetch("org/broken", &options(&server, cache.path(), None)).unwrap_err();
        let msg = format!("{err:#}");
        eprintln!("{case}: {msg}");
        assert!(msg.contains(shard), "{case}: {msg}");
        let snap = cache
            .path()
            .join("models--org--broken/snapshots")
            .join(&repo.sha);
        assert!(
            !snap.join(shard).exists(),
            "{case}: the broken shard is in place"
        );
        let blobs = cache.path().join("models--org--broken/blobs");
        let complete_blob = sha256_hex(&repo.files[shard].bytes);
        assert!(
            !blobs.join(&complete_blob).exists(),
            "{case}: a blob under the complete file's name"
        );
        // And the model does not load from the cache as if it were there.
        let mut opts = options(&server, cache.path(), None);
        opts.offline = true;
        assert!(fetch("org/broken", &opts).is_err(), "{case}");
        // Once the server behaves, a new run completes (resuming a cut file).
        {
            let mut h = server.hub.lock().unwrap();
            let f = h
                .repos
                .get_mut("org/broken")
                .unwrap()
                .files
                .get_mut(shard)
                .unwrap();
            f.cut_at = None;
            f.corrupt = false;
        }
        let dir = fetch("org/broken", &options(&server, cache.path(), None)).unwrap();
        assert_eq!(
            std::fs::read(dir.join(shard)).unwrap(),
            repo.files[shard].bytes,
            "{case}"
        );
    }
}

#[test]
fn repo_missing_a_shard_is_refused_before_downloading_weights() {
    let (_, mut repo) = tiny_repo(true);
    repo.files.remove("model-00002-of-00002.safetensors");
    let mut hub = Hub::default();
    hub.repos.insert("org/halfway".into(), repo);
    let server = Server::start(hub);
    let cache = tempfile::tempdir().unwrap();
    let msg = format!(
        "{:#}",
        fetch("org/halfway", &options(&server, cache.path(), None)).unwrap_err()
    );
    assert!(
        msg.contains("lacks the shard model-00002-of-00002.safetensors"),
        "{msg}"
    );
}

/// The whole path through the binary: a recipe naming a gated hf: model
/// fails before any training, with the access instructions, and leaves no
/// run directory behind.
#[test]
fn train_with_a_gated_hub_model_fails_before_training() {
    let (_, mut repo) = tiny_repo(false);
    repo.access = Access::Gated {
        granted: "x".into(),
    };
    let mut hub = Hub::default();
    hub.repos
        .insert("meta-llama/Llama-3.2-1B-Instruct".into(), repo);
    let server = Server::start(hub);
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let assets = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
    let recipe = work.path().join("r.toml");
    std::fs::write(
        &recipe,
        format!(
            "[run]\nname = \"gated\"\noutput_dir = \"runs\"\n[model]\nsource = \"hf:meta-llama/Llama-3.2-1B-Instruct\"\n\
             [[phase]]\nname = \"sft\"\nalgorithm = \"sft\"\ndataset = \"{}\"\nsteps = 1\n",
            assets.join("sft.jsonl").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_driftui"))
        .args(["train", "--headless"])
        .arg(&recipe)
        .env("HF_ENDPOINT", &server.url)
        .env("HF_HOME", home.path())
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(!out.status.success());
    assert!(
        stderr.contains("gated model") && stderr.contains("HF_TOKEN"),
        "{stderr}"
    );
    assert!(
        !work.path().join("runs").exists(),
        "a run directory was created"
    );
    // The endpoint came from HF_ENDPOINT.
    assert!(stderr.contains(&server.url), "{stderr}");
}

/// A dataset repository in the hub's `push_to_hub` layout (two train
/// shards, a test split) plus a second config in the Parquet-conversion
/// layout, made of the committed Parquet fixtures.
fn dataset_repo() -> FakeRepo {
    let fixture = |name: &str| File {
        bytes: std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/datasets")
                .join(name),
        )
        .unwrap(),
        cut_at: None,
        corrupt: false,
        lfs: true,
    };
    let mut files = BTreeMap::new();
    files.insert(
        "data/train-00000-of-00002.parquet".to_string(),
        fixture("preference_conversational.parquet"),
    );
    files.insert(
        "data/train-00001-of-00002.parquet".to_string(),
        fixture("preference_implicit.parquet"),
    );
    files.insert(
        "data/test-00000-of-00001.parquet".to_string(),
        fixture("preference_implicit_text.parquet"),
    );
    files.insert(
        "harmless/train/0000.parquet".to_string(),
        fixture("preference_implicit_text.parquet"),
    );
    files.insert(
        "README.md".to_string(),
        File {
            bytes: b"---\nlicense: mit\n---\n".to_vec(),
            cut_at: None,
            corrupt: false,
            lfs: false,
        },
    );
    FakeRepo {
        sha: "89abcdef0123456789abcdef0123456789abcdef".into(),
        files,
        access: Access::Open,
    }
}

#[test]
fn hub_datasets_download_a_split_of_a_config_and_load() {
    use driftui::data::{parquet::load_parquet, Columns, DataKind};
    use driftui::model::hub::fetch_dataset;
    let repo = dataset_repo();
    let mut hub = Hub::default();
    hub.repos
        .insert("datasets/driftui-test/prefs".into(), repo.clone());
    let server = Server::start(hub);
    let cache = tempfile::tempdir().unwrap();
    let opts = options(&server, cache.path(), None);
    // Two configs, none named: "default" is taken; split "train" by default.
    let files = fetch_dataset("driftui-test/prefs", None, None, &opts).unwrap();
    assert_eq!(files.len(), 2);
    let base = cache
        .path()
        .join("datasets--driftui-test--prefs/snapshots")
        .join(&repo.sha);
    assert_eq!(files[0], base.join("data/train-00000-of-00002.parquet"));
    assert_eq!(
        server.requests("/api/datasets/driftui-test/prefs/revision/main"),
        1
    );
    // Only the split asked for was downloaded.
    assert_eq!(server.requests("test-00000"), 0);
    let mut rows = Vec::new();
    for f in &files {
        rows.extend(load_parquet(f, DataKind::Preference, &Columns::default()).unwrap());
    }
    assert_eq!(rows.len(), 4);
    // The other config, in the conversion layout.
    let files =
        fetch_dataset("driftui-test/prefs", Some("harmless"), Some("train"), &opts).unwrap();
    assert_eq!(files, [base.join("harmless/train/0000.parquet")]);
    // Offline, the cached split is found again.
    let offline = HubOptions {
        offline: true,
        ..opts.clone()
    };
    let again = fetch_dataset("driftui-test/prefs", None, Some("train"), &offline).unwrap();
    assert_eq!(again.len(), 2);
    // Unknown splits and configs list the ones there are.
    let e = format!(
        "{:#}",
        fetch_dataset("driftui-test/prefs", None, Some("validation"), &opts).unwrap_err()
    );
    assert!(
        e.contains("the hub dataset driftui-test/prefs (config \"default\") has no split \"validation\"; its splits are \"test\", \"train\""),
        "{e}"
    );
    let e = format!(
        "{:#}",
        fetch_dataset("driftui-test/prefs", Some("helpful"), None, &opts).unwrap_err()
    );
    assert!(
        e.contains("has no config \"helpful\"; its configs are \"default\", \"harmless\""),
        "{e}"
    );
    let e = format!(
        "{:#}",
        fetch_dataset("driftui-test/nope", None, None, &opts).unwrap_err()
    );
    assert!(e.contains("driftui-test/nope"), "{e}");
    let e = format!(
        "{:#}",
        fetch_dataset("a/b/c", None, None, &opts).unwrap_err()
    );
    assert!(e.contains("is not a hub dataset name"), "{e}");
}
