//! The `ppgn` binary: parse the command line, run, map errors to exit codes.

// candle allocates a fresh buffer for every op; mimalloc reuses them where
// glibc maps and faults in new pages for each large one (measured: the
// kernel-time share of a training step dropped sharply).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Err(e) = ppgn::cli::main() {
        // One line: the error and its causes, outermost first.
        let msg = e
            .chain()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(": ");
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}
