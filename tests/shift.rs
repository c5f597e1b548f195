//! `cutover shift`, the real binary on real files: only the weights change, an invalid
//! result changes nothing, a ConfigMap's symlink is refused, and a running proxy
//! watching the file applies the shift by itself.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::process::BIN;
use support::{get, tempdir, Proxy, Upstream};

fn shift(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("shift")
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .expect("run cutover shift")
}

const FILE: &str = "# The migration of the ad API.\n\
[listen]\nhttp = [\"127.0.0.1:0\"]   # any port\n\n\
[pools.ecs]   # the VMs\nbackends = [\"127.0.0.1:1\"]\n\n\
[pools.k8s]\nbackends = [\"127.0.0.1:2\"]\n\n\
[[routes]]\nname = \"ad-api\"\n\
split = { ecs = 90, k8s = 10 }   # step 1 of 4\n\
sticky = \"cookie:uid\"\n";

#[test]
fn only_the_weights_change_byte_for_byte() {
    let dir = tempdir::Dir::new();
    let path = dir.path.join("cutover.toml");
    std::fs::write(&path, FILE).expect("write");
    #[cfg(unix)]
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o640))
        .expect("chmod");

    let out = shift(&path, &["ad-api", "ecs=50", "k8s=50"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = std::fs::read_to_string(&path).expect("read");
    assert_eq!(
        after,
        FILE.replace("ecs = 90, k8s = 10", "ecs = 50, k8s = 50")
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("ecs = 90") && said.contains("ecs = 50"),
        "old and new: {said}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o640, "same permissions");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir.path)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
}

#[test]
fn an_invalid_result_is_refused_and_the_file_is_untouched() {
    let dir = tempdir::Dir::new();
    let path = dir.path.join("cutover.toml");
    std::fs::write(&path, FILE).expect("write");
    for args in [
        &["ad-api", "ecs=0", "k8s=0"][..],
        &["ad-api", "k9s=5"],
        &["no-such-route", "ecs=1"],
        &["ad-api", "ecs=-1"],
    ] {
        let out = shift(&path, args);
        assert!(!out.status.success(), "{args:?} accepted");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!said.trim().is_empty(), "{args:?}: says why");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            FILE,
            "{args:?}"
        );
    }
    let out = shift(&path, &["ad-api", "ecs=0", "k8s=0"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("cutover.toml:"),
        "errors as check prints them: {said}"
    );
}

#[test]
fn a_configmap_symlink_is_refused() {
    let dir = tempdir::Dir::new();
    std::fs::create_dir(dir.path.join("..data")).expect("mkdir");
    std::fs::write(dir.path.join("..data/cutover.toml"), FILE).expect("write");
    let path = dir.path.join("cutover.toml");
    std::os::unix::fs::symlink("..data/cutover.toml", &path).expect("symlink");
    let out = shift(&path, &["ad-api", "ecs=50", "k8s=50"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("ConfigMap"), "{said}");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), FILE);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_proxy_applies_a_shift_by_itself() {
    let ecs = Upstream::start("ecs").await;
    let k8s = Upstream::start("k8s").await;
    let proxy = Proxy::start(&format!(
        "# hand-kept\n[pools.ecs]\nbackends = [\"{}\"]\n[pools.k8s]\nbackends = [\"{}\"]\n\
         [[routes]]\nname = \"r\"\nsplit = {{ ecs = 1, k8s = 0 }}   # all on ecs\n",
        ecs.addr, k8s.addr
    ))
    .await;
    let path = proxy.config_path.clone();
    let out = tokio::task::spawn_blocking(move || shift(&path, &["r", "ecs=0", "k8s=1"]))
        .await
        .expect("shift");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while proxy.generation() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not applied within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(proxy.addr, "/", &[]).await.upstream(), "k8s");
    let text = std::fs::read_to_string(&proxy.config_path).expect("read");
    assert!(
        text.contains("split = { ecs = 0, k8s = 1 }   # all on ecs"),
        "{text}"
    );
}
