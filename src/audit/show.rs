//! `cli-guard audit`'s pipeline: read the log's files in order, fold, filter,
//! and print each invocation (a text tree, or one flat JSON object per
//! invocation, nested ones included), or gather what a tool reached
//! for `--suggest`; `--follow` keeps reading the live file as it grows.

use std::collections::VecDeque;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::audit::files_oldest_first;
use crate::audit::fold::{read_files, BadLine, Filter, Folder, Invocation};
use crate::audit::record::Row;
use crate::audit::render::{render, Style};
use crate::audit::suggest::{self, Gathered};
use crate::audit::tail::Tail;

/// Most skipped-line reports printed before they are only counted.
const BAD_LINE_REPORTS: u64 = 20;
/// How often `--follow` looks for new rows.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// What `cli-guard audit` was asked to show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ShowOptions {
    /// The live log file; its rotated files are read before it.
    pub path: PathBuf,
    pub filter: Filter,
    /// Only the last N entries.
    pub last: Option<usize>,
    pub json: bool,
    pub follow: bool,
    /// Print a pinned allowlist entry for this tool instead.
    pub suggest: Option<String>,
    pub no_color: bool,
}

/// Why the log could not be shown.
#[derive(Debug)]
pub(crate) enum ShowError {
    /// Neither the live file nor a rotated one exists.
    NoLog(PathBuf),
    /// A file exists but cannot be read.
    Read(std::io::Error),
}

impl std::fmt::Display for ShowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShowError::NoLog(path) => write!(
                f,
                "no audit log at {} yet (nothing guarded has run, or it logs elsewhere: set CLI_GUARD_AUDIT_LOG or pass --file)",
                path.display()
            ),
            ShowError::Read(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ShowError {}

/// Shows the log as `opts` asks; with `follow`, returns only when stdout
/// closes or a read fails.
pub(crate) fn show(opts: &ShowOptions) -> Result<(), ShowError> {
    let path = &opts.path;
    let files = files_oldest_first(path);
    if !files.iter().any(|f| f.exists()) {
        return Err(ShowError::NoLog(path.clone()));
    }
    let mut bad = BadLines::default();
    if let Some(tool) = &opts.suggest {
        let mut gathered = Gathered::new(tool);
        read_files(
            &files,
            |r| {
                gathered.push(&r);
                ControlFlow::Continue(())
            },
            |b| bad.report(b),
        )
        .map_err(ShowError::Read)?;
        bad.finish();
        print!("{}", suggest::render(&gathered));
        return Ok(());
    }
    let mut out = Output::new(opts);
    let mut folder = Folder::default();
    if opts.follow {
        // The rotated files, then the live one from its first byte on, by
        // the same reader that then waits for more: no row falls between.
        let rotated = &files[..files.len() - 1];
        read_files(rotated, |r| out.take(folder.push(r)), |b| bad.report(b)).map_err(ShowError::Read)?;
        return follow(path, folder, out, bad);
    }
    read_files(&files, |r| out.take(folder.push(r)), |b| bad.report(b)).map_err(ShowError::Read)?;
    if out.closed {
        // Whoever read stdout has gone: nothing more to say, on stderr either.
        return Ok(());
    }
    if out.take(folder.finish()).is_continue() {
        out.flush_last();
    }
    bad.finish();
    Ok(())
}

/// Filters and prints folded invocations (holding the last N if asked).
struct Output {
    filter: Filter,
    json: bool,
    style: Style,
    last: Option<usize>,
    held: VecDeque<Invocation>,
    /// stdout was closed (`| head`): the output has ended; nothing to report.
    closed: bool,
}

impl Output {
    fn new(opts: &ShowOptions) -> Output {
        Output {
            filter: opts.filter.clone(),
            json: opts.json,
            style: Style::detect(opts.no_color),
            last: opts.last,
            held: VecDeque::new(),
            closed: false,
        }
    }

    /// Takes finished invocations; `Break` once stdout has closed, so the
    /// reader stops there (`cli-guard audit | head` reads no further).
    fn take(&mut self, done: Vec<Invocation>) -> ControlFlow<()> {
        for tree in done {
            // JSON is one flat object per invocation, selected on its own;
            // the text view shows trees.
            let shown = if self.json {
                self.filter.select(tree)
            } else {
                self.filter.apply(tree).into_iter().collect()
            };
            for inv in shown {
                self.hold_or_print(inv);
            }
        }
        match self.closed {
            true => ControlFlow::Break(()),
            false => ControlFlow::Continue(()),
        }
    }

    /// `--last N` holds the last N entries (trees, or JSON objects).
    fn hold_or_print(&mut self, inv: Invocation) {
        match self.last {
            Some(n) => {
                if self.held.len() == n {
                    self.held.pop_front();
                }
                self.held.push_back(inv);
            }
            None => self.print(&inv),
        }
    }

    /// Prints what `--last` held back; from then on, prints as it comes.
    fn flush_last(&mut self) {
        for inv in std::mem::take(&mut self.held) {
            self.print(&inv);
        }
        self.last = None;
    }

    fn print(&mut self, inv: &Invocation) {
        if self.closed {
            return;
        }
        let text = if self.json {
            format!("{}\n", inv.to_json())
        } else {
            render(inv, self.style)
        };
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (`| head`) ends the output; nothing to report.
        if stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            self.closed = true;
        }
    }
}

/// Reports skipped lines on stderr, the first few in full.
#[derive(Debug, Default)]
struct BadLines {
    count: u64,
}

impl BadLines {
    fn report(&mut self, bad: BadLine) {
        self.count += 1;
        if self.count <= BAD_LINE_REPORTS {
            eprintln!("cli-guard: {bad}");
        }
    }

    fn finish(&self) {
        if self.count > BAD_LINE_REPORTS {
            eprintln!(
                "cli-guard: {} more lines skipped ({} in all)",
                self.count - BAD_LINE_REPORTS,
                self.count
            );
        }
    }
}

/// `--follow`: reads the live log from its start, then keeps reading as it
/// grows, across rotations, until interrupted. What `--last` held back is
/// printed once the live file has been read to its end.
fn follow(path: &Path, mut folder: Folder, mut out: Output, mut bad: BadLines) -> Result<(), ShowError> {
    let mut tail = Tail::open(path);
    let mut caught_up = false;
    loop {
        tail.read(path, &mut |r: Row| out.take(folder.push(r)), &mut |b| {
            bad.report(b)
        });
        if out.closed {
            return Ok(());
        }
        if !caught_up {
            out.flush_last();
            caught_up = true;
        }
        if tail.rotated(path) {
            // Rows written to the old file just before the rename.
            tail.read(path, &mut |r: Row| out.take(folder.push(r)), &mut |b| {
                bad.report(b)
            });
            tail = Tail::open(path);
            continue;
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}
