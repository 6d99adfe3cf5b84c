// Shared by the targets: the input written to a file of this process, for
// the loaders that read a path.
pub fn as_file(data: &[u8], ext: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("ppgn-fuzz-{}.{ext}", std::process::id()));
    std::fs::write(&p, data).expect("temp file");
    p
}
