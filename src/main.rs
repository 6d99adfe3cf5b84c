//! The `ppgn` binary: parse the command line, run, map errors to exit codes.

// candle allocates a fresh buffer for every op; mimalloc reuses them where
// glibc maps and faults in new pages for each large one (measured: the
// kernel-time share of a training step dropped sharply).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

fn main() {
    // Keep freed memory instead of returning it to the OS, and commit arenas
    // eagerly: candle allocates tens of MB per op, and every page the OS
    // hands back must be zeroed again (`clear_page_erms` was 40% of a
    // DCGAN + EfficientNet-Lite0 sampling step in `perf`; 14.1 s -> 8.7 s
    // for 4 steps at 8 chains). Option numbers from mimalloc.h's
    // `mi_option_e`: arena_eager_commit = 4, purge_delay = 15.
    // SAFETY: plain setters of mimalloc's global options, called before
    // any other thread exists.
    unsafe {
        libmimalloc_sys::mi_option_set(15, -1);
        libmimalloc_sys::mi_option_set(4, 1);
    }
    // A write beyond the file-size limit (`ulimit -f`) then fails with
    // EFBIG, reported like a full disk, instead of killing the process.
    // SAFETY: setting a signal's disposition to SIG_IGN before any thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // Output piped into a reader that stops early (`ppgn eval RUN | head`)
    // ends the process quietly, as other command-line tools do, instead of
    // panicking in `println!`; the server keeps writes to closed sockets as
    // errors of that connection.
    if std::env::args().nth(1).as_deref() != Some("serve") {
        // SAFETY: setting a signal's disposition before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    if let Err(e) = cli::main() {
        // One line: the error and its causes, outermost first (a cause
        // the message already quotes is not repeated), each on one line.
        let mut msg = String::new();
        for c in e.chain() {
            let c = one_line(&c.to_string());
            if !msg.contains(&c) {
                msg = if msg.is_empty() {
                    c
                } else {
                    format!("{msg}: {c}")
                };
            }
        }
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}

/// `text` on one line: its non-empty lines trimmed and joined by "; ".
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
