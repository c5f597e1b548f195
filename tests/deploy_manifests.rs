//! The deployment kit, checked offline: `config/kubernetes/` against the Kubernetes
//! schemas and against cutover's own config, the kustomization against the files that
//! exist, the systemd unit with `systemd-analyze`, and the container build against the
//! pod that runs it.
//!
//! Needs `kubernetes-validate` (from PyPI, with PyYAML, in a venv under cargo's
//! `target/tmp`), `systemd-analyze` and `/bin/kill`. When one is missing the tests run
//! `tests/deps/install` once, as CI does; that is the only time they use the network.
//! Every command they run has a time limit.
//!
//! The container image itself is not built here: base images cannot be fetched on the
//! machines CI runs on. Only its user and paths are compared with the Deployment.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use cutover::config::{self, Config, Target};
use support::tempdir;
use support::tls::Ca;

/// The Kubernetes versions the manifests must be valid for: the oldest the kit supports
/// (the preStop `sleep` action is on by default from 1.30) and the newest whose schemas
/// the pinned kubernetes-validate (tests/deps/install) ships.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// How long one offline command (a validator, systemd-analyze, cutover check) may take.
const LIMIT: Duration = Duration::from_secs(120);

/// How long the one-time install may take (apt and PyPI downloads).
const INSTALL_LIMIT: Duration = Duration::from_secs(900);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn kit() -> PathBuf {
    repo().join("config/kubernetes")
}

/// Every manifest of the kit: its YAML files but the kustomization itself, by name.
fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(kit())
        .expect("read config/kubernetes")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml" || e == "yml")
                && p.file_name().is_some_and(|n| n != "kustomization.yaml")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 5, "config/kubernetes has only {files:?}");
    files
}

// === The tools ===

/// The tools these tests run, found or installed once per test process.
struct Tools {
    kubernetes_validate: PathBuf,
    /// The venv's python, which has PyYAML (a dependency of kubernetes-validate).
    python: PathBuf,
    systemd_analyze: PathBuf,
}

impl Tools {
    /// Runs tests/deps/install once per test process: silent and quick when everything
    /// is there (it, not this file, knows the pinned versions), and the install itself
    /// on a fresh machine. Its lock keeps test binaries running at once from installing
    /// twice.
    fn get() -> &'static Tools {
        static TOOLS: OnceLock<Tools> = OnceLock::new();
        TOOLS.get_or_init(|| {
            let script = repo().join("tests/deps/install");
            let out = run(
                "tests/deps/install",
                Command::new("bash")
                    .arg(&script)
                    .env("CUTOVER_DEPS_VENV", venv()),
                INSTALL_LIMIT,
            );
            assert!(
                out.status.success(),
                "{} failed ({}):\n{}",
                script.display(),
                out.status,
                text(&out)
            );
            Tools::find().expect(
                "kubernetes-validate, systemd-analyze and /bin/kill after tests/deps/install",
            )
        })
    }

    fn find() -> Option<Tools> {
        let venv = venv();
        let kubernetes_validate = venv.join("bin/kubernetes-validate");
        let python = venv.join("bin/python");
        if !kubernetes_validate.is_file() || !python.is_file() || !Path::new("/bin/kill").is_file()
        {
            return None;
        }
        Some(Tools {
            kubernetes_validate,
            python,
            systemd_analyze: support::prometheus::on_path("systemd-analyze")?,
        })
    }
}

/// Where tests/deps/install puts kubernetes-validate: cargo's temp dir for tests, the
/// script's default too (`${CARGO_TARGET_DIR:-target}/tmp/deps-venv`).
fn venv() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("deps-venv")
}

/// Runs `cmd` with no input and its output captured; kills it and fails the test when
/// it takes longer than `limit`.
fn run(what: &str, cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = r.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The documents of a YAML file as JSON values, read by PyYAML (no YAML crate here).
fn yaml_docs(path: &Path) -> Vec<Value> {
    let script = "import json, sys, yaml\n\
                  with open(sys.argv[1]) as f:\n    \
                  docs = [d for d in yaml.safe_load_all(f) if d is not None]\n\
                  json.dump(docs, sys.stdout)\n";
    let out = run(
        "python3 (PyYAML)",
        Command::new(&Tools::get().python)
            .args(["-c", script])
            .arg(path),
        LIMIT,
    );
    assert!(out.status.success(), "{}: {}", path.display(), text(&out));
    let docs: Value = serde_json::from_slice(&out.stdout).expect("json from python");
    docs.as_array().expect("a list of documents").clone()
}

// === Kubernetes ===

/// `kubernetes-validate --strict` on `files` for every version of
/// [`KUBERNETES_VERSIONS`]: the output, and whether it passed.
fn validate(files: &[PathBuf]) -> (bool, String) {
    let mut cmd = Command::new(&Tools::get().kubernetes_validate);
    cmd.arg("--strict");
    for v in KUBERNETES_VERSIONS {
        cmd.args(["--kubernetes-version", v]);
    }
    let out = run("kubernetes-validate", cmd.args(files), LIMIT);
    let text = text(&out);
    // A kind or apiVersion it has no schema for is only a WARN with exit status 0: a
    // typo there would pass unseen. Every line must be a pass.
    let clean = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .all(|l| l.starts_with("INFO ") && l.contains(" passed "));
    (out.status.success() && clean, text)
}

#[test]
fn every_manifest_is_valid_for_kubernetes_strictly() {
    let files = manifests();
    let (ok, out) = validate(&files);
    assert!(ok, "kubernetes-validate --strict refused the kit:\n{out}");
    let documents: usize = files.iter().map(|f| yaml_docs(f).len()).sum();
    let passed = out.lines().filter(|l| l.contains(" passed ")).count();
    assert_eq!(
        passed,
        documents * KUBERNETES_VERSIONS.len(),
        "every document, once per version:\n{out}"
    );

    // The check has teeth: one misspelt field of the pod is refused.
    let dir = tempdir::Dir::new();
    let bad = dir.path.join("deployment.yaml");
    let original = std::fs::read_to_string(kit().join("deployment.yaml")).expect("read");
    assert!(original.contains("readinessProbe:"));
    std::fs::write(&bad, original.replace("readinessProbe:", "readinesProbe:")).expect("write");
    let (ok, out) = validate(&[bad]);
    assert!(!ok, "a misspelt field passed:\n{out}");
}

#[test]
fn kustomization_lists_every_manifest_and_generates_nothing() {
    let docs = yaml_docs(&kit().join("kustomization.yaml"));
    let [k] = &docs[..] else {
        panic!("kustomization.yaml holds {} documents", docs.len())
    };
    assert_eq!(k["kind"], "Kustomization");
    let listed: Vec<&str> = k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a resource is a file name"))
        .collect();
    let unique: BTreeSet<&str> = listed.iter().copied().collect();
    assert_eq!(unique.len(), listed.len(), "listed twice: {listed:?}");
    let present: BTreeSet<String> = manifests()
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    let listed: BTreeSet<String> = unique.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(
        listed.difference(&present).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "kustomization.yaml lists files that do not exist"
    );
    assert_eq!(
        present.difference(&listed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "manifests that kustomization.yaml does not list"
    );

    // A generated ConfigMap's name carries a hash of its content: every weight change
    // would become a rolling restart instead of a live reload.
    for generator in ["configMapGenerator", "secretGenerator"] {
        if !k[generator].is_null() {
            assert_eq!(
                k["generatorOptions"]["disableNameSuffixHash"], true,
                "{generator} with a hash suffix defeats the live file watch"
            );
        }
    }
    // The headless Service belongs in the application's namespace.
    assert!(
        k["namespace"].is_null(),
        "a kustomization namespace moves every resource"
    );
}

/// The kit's documents, and the text of the cutover config in its ConfigMap.
struct Kit {
    docs: Vec<Value>,
    /// The text of `cutover.toml` in the ConfigMap, as shipped.
    toml: String,
}

impl Kit {
    fn load() -> Kit {
        let docs: Vec<Value> = manifests().iter().flat_map(|f| yaml_docs(f)).collect();
        let kit = Kit {
            toml: String::new(),
            docs,
        };
        let (path, _) = kit.config_path();
        let key = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let toml = kit.config_map()["data"][&key]
            .as_str()
            .unwrap_or_else(|| panic!("the ConfigMap has no key {key}"))
            .to_owned();
        Kit { toml, ..kit }
    }

    fn one(&self, kind: &str) -> &Value {
        let all: Vec<&Value> = self.docs.iter().filter(|d| d["kind"] == kind).collect();
        let [one] = &all[..] else {
            panic!("expected one {kind}, found {}", all.len())
        };
        one
    }

    fn deployment(&self) -> &Value {
        self.one("Deployment")
    }

    fn pod(&self) -> &Value {
        &self.deployment()["spec"]["template"]["spec"]
    }

    fn container(&self) -> &Value {
        let containers = self.pod()["containers"].as_array().expect("containers");
        let [c] = &containers[..] else {
            panic!("expected one container")
        };
        c
    }

    fn config_map(&self) -> &Value {
        self.one("ConfigMap")
    }

    /// The path after `-c` in the container's args, and the mount it lies in.
    fn config_path(&self) -> (PathBuf, &Value) {
        let args: Vec<&str> = self.container()["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("arg"))
            .collect();
        let at = args.iter().position(|a| *a == "-c").expect("-c in args");
        let path = PathBuf::from(args[at + 1]);
        let volume = self.volume_with("configMap", "name", &self.config_map()["metadata"]["name"]);
        let mount = self.mount_of(volume);
        assert_eq!(
            path.parent(),
            Some(Path::new(mount["mountPath"].as_str().expect("mountPath"))),
            "the config is read from the ConfigMap's mount"
        );
        (path, mount)
    }

    /// The pod volume of `source` type whose `key` is `value`.
    fn volume_with(&self, source: &str, key: &str, value: &Value) -> &Value {
        self.pod()["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| &v[source][key] == value)
            .unwrap_or_else(|| panic!("no {source} volume with {key} {value}"))
    }

    fn mount_of(&self, volume: &Value) -> &Value {
        self.container()["volumeMounts"]
            .as_array()
            .expect("volumeMounts")
            .iter()
            .find(|m| m["name"] == volume["name"])
            .unwrap_or_else(|| panic!("volume {} is not mounted", volume["name"]))
    }

    /// The Secret's mount directory.
    fn tls_mount(&self) -> PathBuf {
        let secret = self.one("Secret");
        assert_eq!(secret["type"], "kubernetes.io/tls");
        let volume = self.volume_with("secret", "secretName", &secret["metadata"]["name"]);
        PathBuf::from(
            self.mount_of(volume)["mountPath"]
                .as_str()
                .expect("mountPath"),
        )
    }

    fn container_port(&self, name: &str) -> u16 {
        let port = self.container()["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no container port {name}"));
        port["containerPort"].as_u64().expect("containerPort") as u16
    }

    /// The ConfigMap's config with the Secret's mount moved to `dir`, where a fresh
    /// certificate and key are written under the Secret's file names: what a pod sees.
    fn config_in(&self, dir: &Path) -> (PathBuf, String) {
        let tls = dir.join("tls");
        std::fs::create_dir_all(&tls).expect("tls dir");
        let leaf = Ca::new("deploy test CA").leaf(&["api.example.com"]);
        std::fs::write(tls.join("tls.crt"), &leaf.cert_pem).expect("tls.crt");
        std::fs::write(tls.join("tls.key"), &leaf.key_pem).expect("tls.key");
        let mount = self.tls_mount();
        let text = self.toml.replace(
            &format!("\"{}/", mount.display()),
            &format!("\"{}/", tls.display()),
        );
        let path = dir.join("cutover.toml");
        std::fs::write(&path, &text).expect("write cutover.toml");
        (path, text)
    }

    /// The ConfigMap's config, parsed by cutover with the certificates in place.
    fn config(&self) -> Config {
        let dir = tempdir::Dir::new();
        let (path, _) = self.config_in(&dir.path);
        let loaded = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        loaded.config
    }

    /// A value of the raw TOML (for settings the config types keep to the crate).
    fn raw(&self, table: &str, key: &str) -> toml::Value {
        let doc: toml::Table = self.toml.parse().expect("toml");
        doc[table][key].clone()
    }
}

fn seconds(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{v} is not a number of seconds"))
}

#[test]
fn configmap_config_passes_cutover_check() {
    let kit = Kit::load();

    // As shipped, only the certificates are missing: they come from the Secret.
    let mount = kit.tls_mount();
    let errors = match config::parse(Path::new("cutover.toml"), &kit.toml) {
        Ok(_) => panic!("the certificates under {} exist here?", mount.display()),
        Err(e) => e.errors,
    };
    for e in &errors {
        assert!(
            e.message.contains(&format!("{}/", mount.display()))
                || e.message.contains("https listener needs certificates"),
            "the ConfigMap's config has an error besides the certificates: {}:{}: {}",
            e.line,
            e.column,
            e.message
        );
    }

    // With a certificate and key where the Secret puts them, the binary accepts it as
    // an operator would run it, and the library finds no warning either.
    let dir = tempdir::Dir::new();
    let (path, _) = kit.config_in(&dir.path);
    let out = run(
        "cutover check",
        Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(["check", "-c"])
            .arg(&path),
        LIMIT,
    );
    assert!(out.status.success(), "cutover check: {}", text(&out));
    assert!(text(&out).contains(": ok:"), "{}", text(&out));
    let loaded = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn pod_mounts_config_and_certificates_as_directories() {
    let kit = Kit::load();
    let mounts = kit.container()["volumeMounts"]
        .as_array()
        .expect("volumeMounts");
    // A subPath mount is a copy that the kubelet never updates: cutover would never
    // see an edit of the ConfigMap or a renewed certificate.
    for m in mounts {
        assert!(
            m["subPath"].is_null() && m["subPathExpr"].is_null(),
            "subPath mount: {m}"
        );
    }
    // Nested API-data volumes confuse the kubelet's atomic updates.
    let paths: Vec<&str> = mounts
        .iter()
        .map(|m| m["mountPath"].as_str().expect("path"))
        .collect();
    for a in &paths {
        for b in &paths {
            assert!(
                a == b || !Path::new(a).starts_with(b),
                "{a} is mounted inside {b}"
            );
        }
    }
    kit.config_path();

    // The config names the Secret's two files, under its mount.
    let config = kit.config();
    let tls = kit.tls_mount();
    let raw_certs = kit.raw("tls", "certs");
    let certs = raw_certs.as_array().expect("[tls] certs");
    assert_eq!(certs.len(), config.tls.len());
    for c in certs {
        assert_eq!(
            c["cert"].as_str(),
            Some(&*tls.join("tls.crt").to_string_lossy())
        );
        assert_eq!(
            c["key"].as_str(),
            Some(&*tls.join("tls.key").to_string_lossy())
        );
    }
    let secret = kit.one("Secret");
    for key in ["tls.crt", "tls.key"] {
        assert!(
            !secret["stringData"][key].is_null() || !secret["data"][key].is_null(),
            "the Secret has no {key}"
        );
    }
}

#[test]
fn probes_ports_and_scraping_match_the_config() {
    let kit = Kit::load();
    let config = kit.config();
    let c = kit.container();

    // The admin listener must be reachable from the kubelet and Prometheus.
    let admin: SocketAddr = config.admin;
    assert!(
        admin.ip().is_unspecified(),
        "admin listens on {admin}: not reachable from outside the pod"
    );
    assert_eq!(kit.container_port("admin"), admin.port());
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "admin");
    let annotations = &kit.deployment()["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    assert_eq!(annotations["prometheus.io/port"], admin.port().to_string());

    // The listeners are the container ports the Service sends 80 and 443 to.
    assert_eq!(config.listen.http.len(), 1);
    assert_eq!(config.listen.https.len(), 1);
    assert_eq!(kit.container_port("http"), config.listen.http[0].port());
    assert_eq!(kit.container_port("https"), config.listen.https[0].port());
    let edge = kit
        .docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["spec"]["type"] == "LoadBalancer")
        .expect("a LoadBalancer Service");
    let ports: BTreeMap<u64, &str> = edge["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["port"].as_u64().expect("port"),
                p["targetPort"].as_str().expect("named targetPort"),
            )
        })
        .collect();
    assert_eq!(ports, BTreeMap::from([(80, "http"), (443, "https")]));
    // The client's address survives the balancer one way or the other.
    assert!(
        edge["spec"]["externalTrafficPolicy"] == "Local" || config.listen.proxy_protocol,
        "neither externalTrafficPolicy: Local nor proxy_protocol: cutover would see node addresses"
    );

    // One worker per core it may use.
    let cpu = c["resources"]["limits"]["cpu"]
        .as_str()
        .expect("a CPU limit");
    let cores: usize = cpu
        .parse()
        .unwrap_or_else(|_| panic!("CPU limit {cpu} in whole cores"));
    assert_eq!(config.workers, cores, "[runtime] workers and the CPU limit");
    for what in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                !c["resources"][what][resource].is_null(),
                "no {resource} in {what}"
            );
        }
    }
}

#[test]
fn shutdown_outlasts_prestop_and_grace() {
    let kit = Kit::load();
    let grace_text = kit.raw("limits", "shutdown_grace");
    let grace = humantime::parse_duration(grace_text.as_str().expect("shutdown_grace"))
        .expect("shutdown_grace");
    let pre_stop = seconds(&kit.container()["lifecycle"]["preStop"]["sleep"]["seconds"]);
    let termination = seconds(&kit.pod()["terminationGracePeriodSeconds"]);
    assert!(
        termination > pre_stop + grace.as_secs(),
        "terminationGracePeriodSeconds {termination} <= preStop {pre_stop} + shutdown_grace {grace:?}: \
         the kubelet's SIGKILL would cut the drain"
    );
}

#[test]
fn pod_runs_locked_down() {
    let kit = Kit::load();
    let pod = kit.pod();
    let c = kit.container();
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let uid = pod["securityContext"]["runAsUser"]
        .as_u64()
        .expect("a numeric runAsUser");
    assert!(uid > 0);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert!(c["securityContext"]["capabilities"]["add"].is_null());
    assert!(c["securityContext"]["privileged"] != true);
    let account = kit.one("ServiceAccount");
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    assert_eq!(account["automountServiceAccountToken"], false);
}

#[test]
fn services_and_budget_select_the_pods_and_the_k8s_pool_is_headless() {
    let kit = Kit::load();
    let deployment = kit.deployment();
    let labels = deployment["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .expect("pod labels");
    let namespace = &deployment["metadata"]["namespace"];
    let selects = |selector: &Value| {
        let selector = selector.as_object().expect("a selector");
        !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    assert!(selects(&deployment["spec"]["selector"]["matchLabels"]));
    let edge = kit
        .docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["spec"]["type"] == "LoadBalancer")
        .expect("a LoadBalancer Service");
    assert_eq!(&edge["metadata"]["namespace"], namespace);
    assert!(
        selects(&edge["spec"]["selector"]),
        "the edge Service selects no cutover pod"
    );
    let pdb = kit.one("PodDisruptionBudget");
    assert_eq!(&pdb["metadata"]["namespace"], namespace);
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"]));
    let replicas = deployment["spec"]["replicas"].as_u64().expect("replicas");
    assert!(replicas >= 2, "an edge of one replica");
    let unavailable = pdb["spec"]["maxUnavailable"]
        .as_u64()
        .expect("maxUnavailable");
    assert!(unavailable >= 1 && unavailable < replicas);
    for spread in kit.pod()["topologySpreadConstraints"]
        .as_array()
        .expect("topology spread")
    {
        assert!(selects(&spread["labelSelector"]["matchLabels"]));
    }

    // Every hostname backend of the config is a headless Service of the kit.
    let config = kit.config();
    let mut names = 0;
    for pool in &config.pools {
        for b in &pool.backends {
            let Target::Host { name, port } = &b.target else {
                continue;
            };
            names += 1;
            let parts: Vec<&str> = name.split('.').collect();
            let [service, ns, "svc", "cluster", "local"] = parts[..] else {
                panic!("pool {}: {name} is not a cluster Service name", pool.name)
            };
            let svc = kit
                .docs
                .iter()
                .find(|d| {
                    d["kind"] == "Service"
                        && d["metadata"]["name"] == service
                        && d["metadata"]["namespace"] == ns
                })
                .unwrap_or_else(|| panic!("pool {}: no Service {service} in {ns}", pool.name));
            assert_eq!(
                svc["spec"]["clusterIP"], "None",
                "{name}: not headless, kube-proxy would pick the pod"
            );
            assert!(
                svc["spec"]["ports"]
                    .as_array()
                    .expect("ports")
                    .iter()
                    .any(|p| p["port"] == *port),
                "{name}: no port {port}"
            );
        }
    }
    assert!(
        names >= 1,
        "no pool finds its pods through a headless Service"
    );
}

#[test]
fn container_image_matches_the_pod() {
    let kit = Kit::load();
    let dockerfile =
        std::fs::read_to_string(repo().join("config/container/Dockerfile")).expect("Dockerfile");
    let last_stage = dockerfile
        .rsplit_once("\nFROM ")
        .expect("a multi-stage build")
        .1;
    let instruction = |word: &str| {
        last_stage
            .lines()
            .find_map(|l| l.strip_prefix(word).map(str::trim))
            .unwrap_or_else(|| panic!("no {word} in the runtime stage"))
    };
    let uid = kit.pod()["securityContext"]["runAsUser"]
        .as_u64()
        .expect("runAsUser");
    let gid = kit.pod()["securityContext"]["runAsGroup"]
        .as_u64()
        .expect("runAsGroup");
    assert_eq!(
        instruction("USER "),
        format!("{uid}:{gid}"),
        "the image's numeric user is the pod's"
    );
    assert_eq!(instruction("ENTRYPOINT "), r#"["/usr/local/bin/cutover"]"#);
    let (config_path, _) = kit.config_path();
    assert!(
        instruction("CMD ").contains(&format!("\"{}\"", config_path.display())),
        "the image's default config path is the pod's"
    );

    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "*"),
        "the build context should be an allow list"
    );
}

// === systemd ===

/// The unit with its cutover paths pointed at the binary under test: `systemd-analyze
/// verify` checks that every command it runs exists and is executable.
fn unit_under_test(dir: &Path) -> (PathBuf, String) {
    let unit =
        std::fs::read_to_string(repo().join("config/systemd/cutover.service")).expect("unit");
    let path = dir.join("cutover.service");
    let copy = unit.replace(
        "/usr/local/bin/cutover ",
        &format!("{} ", env!("CARGO_BIN_EXE_cutover")),
    );
    std::fs::write(&path, &copy).expect("write unit");
    (path, unit)
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let tools = Tools::get();
    let dir = tempdir::Dir::new();
    let (path, unit) = unit_under_test(&dir.path);
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let all = |key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .collect()
    };
    let config = "/etc/cutover/cutover.toml";
    assert_eq!(
        all("ExecStart"),
        [format!("/usr/local/bin/cutover run -c {config}")]
    );
    assert_eq!(
        all("ExecStartPre"),
        [format!("/usr/local/bin/cutover check -c {config}")]
    );
    assert_eq!(
        all("ExecReload"),
        [
            format!("/usr/local/bin/cutover check -c {config}"),
            "/bin/kill -HUP $MAINPID".into()
        ]
    );
    assert_eq!(all("KillSignal"), ["SIGTERM"]);
    assert_eq!(all("Restart"), ["on-failure"]);
    assert_eq!(all("AmbientCapabilities"), ["CAP_NET_BIND_SERVICE"]);
    assert_eq!(all("CapabilityBoundingSet"), ["CAP_NET_BIND_SERVICE"]);
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
    ] {
        assert_eq!(all(key), [value], "{key}");
    }
    let nofile: u64 = all("LimitNOFILE")[0].parse().expect("LimitNOFILE");
    assert!(nofile >= 65536);

    // systemd's SIGKILL must not cut the drain: TimeoutStopSec above the shutdown_grace
    // of the config the unit's comment installs (config/cutover.example.toml).
    let stop = humantime::parse_duration(all("TimeoutStopSec")[0]).expect("TimeoutStopSec");
    let example: toml::Table = std::fs::read_to_string(repo().join("config/cutover.example.toml"))
        .expect("example config")
        .parse()
        .expect("toml");
    let grace =
        humantime::parse_duration(example["limits"]["shutdown_grace"].as_str().expect("grace"))
            .expect("shutdown_grace");
    assert!(
        stop > grace,
        "TimeoutStopSec {stop:?} <= shutdown_grace {grace:?}"
    );

    // verify prints unknown keys and bad values as warnings and still exits 0: any
    // word about this unit fails. (Words about the machine's own units, which it loads
    // for After= and WantedBy=, are not this test's business.)
    let out = run(
        "systemd-analyze verify",
        Command::new(&tools.systemd_analyze)
            .arg("verify")
            .arg(&path),
        LIMIT,
    );
    let said = text(&out);
    let about_us: Vec<&str> = said.lines().filter(|l| l.contains("cutover")).collect();
    assert!(
        out.status.success() && about_us.is_empty(),
        "systemd-analyze verify ({}):\n{said}",
        out.status
    );
    // The hardening, scored: an overall exposure of 2.0 or less ("OK"; the scale of
    // --threshold is ten times the printed one).
    let out = run(
        "systemd-analyze security",
        Command::new(&tools.systemd_analyze)
            .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
            .arg(&path),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "systemd-analyze security ({}):\n{}",
        out.status,
        text(&out)
    );

    // The check the unit runs before a start and a reload refuses a bad file.
    let bad = dir.path.join("bad.toml");
    std::fs::write(&bad, "[pools.a]\nbackends = []\n").expect("write");
    let out = run(
        "cutover check",
        Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(["check", "-c"])
            .arg(&bad),
        LIMIT,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "cutover check on a bad file: {}",
        text(&out)
    );
}
