//! `kefu kb …` and `kefu chat`: staff tools for the knowledge base.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use kefu::dialogue::conversations::Channel;
use kefu::dialogue::kb::{self, Thresholds};
use kefu::dialogue::{Conversation, Lang, Matcher, eval};

/// The knowledge base, indexed once; with the semantic re-ranker from `models`
/// (None: words only).
fn load(dir: &Path, models: Option<&Path>) -> Result<Matcher, ExitCode> {
    let kb = match kb::load_dir(dir) {
        Ok(kb) => Arc::new(kb),
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{} error(s)", e.diagnostics.len());
            return Err(ExitCode::FAILURE);
        }
    };
    let fail = |e: String| {
        eprintln!("kefu: {e}");
        ExitCode::FAILURE
    };
    let encoder = match models {
        Some(models) => Some(
            kefu::server::open_encoder(models, Some(&models.join("embed/examples.cache")))
                .map_err(|e| fail(e.to_string()))?,
        ),
        None => None,
    };
    Matcher::with_encoder(kb, encoder).map_err(|e| fail(e.to_string()))
}

pub fn check(dir: &Path, models: Option<&Path>) -> ExitCode {
    let m = match load(dir, None) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let examples: usize = m.kb.intents.iter().map(|i| i.examples.len()).sum();
    println!(
        "{}: ok ({} intents, {} example questions, version {})",
        dir.display(),
        m.kb.intents.len(),
        examples,
        m.kb.version
    );
    let Some(models) = models else {
        return ExitCode::SUCCESS;
    };
    // The files are valid; the understanding report needs the sentence-embedding model.
    match load(dir, Some(models)) {
        Ok(m) => print!("{}", understanding(&m)),
        Err(_) => eprintln!("(no understanding report without the model; --lexical skips it)"),
    }
    ExitCode::SUCCESS
}

/// What the knowledge base's own examples say about how well it will be understood.
fn understanding(m: &Matcher) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let Some(cal) = m.calibration() else {
        return s;
    };
    let pct = |x: f32| format!("{:.1} %", x * 100.0);
    let _ = writeln!(
        s,
        "understanding to expect (each example left out and asked as a question; each intent left out for near misses it does not cover):"
    );
    for (lang, r) in &cal.langs {
        let _ = writeln!(
            s,
            "  {}: expected overall accuracy {:.2}: in scope answered right {} ({}/{}), near misses declined {} ({}/{}); answer threshold {:.3}{}",
            lang.code(),
            r.expected_accuracy(),
            pct(r.answered_right_share()),
            r.answered_right,
            r.in_scope,
            pct(r.rejected_share()),
            r.rejected,
            r.out_of_scope,
            r.scale.threshold,
            if r.own {
                ""
            } else {
                " (too few examples to calibrate this language alone)"
            }
        );
    }
    if !m.is_classified() {
        let _ = writeln!(
            s,
            "  ranking by centroids alone: more than {} (example, intent) pairs to train the classifier at load time",
            kefu::dialogue::classifier::MAX_CELLS
        );
    }
    let id = |i: usize| m.kb.intents[i].id.as_str();
    let mut pairs: std::collections::BTreeMap<(usize, usize), usize> = Default::default();
    for (&(a, b), &n) in &cal.confusions {
        *pairs.entry((a.min(b), a.max(b))).or_default() += n;
    }
    let mut pairs: Vec<_> = pairs.into_iter().collect();
    pairs.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    if !pairs.is_empty() {
        let _ = writeln!(
            s,
            "confusable intents (left-out examples taken for the other; reword or merge them):"
        );
        for ((a, b), n) in pairs.iter().take(15) {
            let _ = writeln!(s, "  {n:>3}  {} <-> {}", id(*a), id(*b));
        }
    }
    let mut needs = Vec::new();
    for (i, intent) in m.kb.intents.iter().enumerate() {
        let mut why = Vec::new();
        for lang in Lang::ALL {
            let n = intent.examples.iter().filter(|e| e.lang == lang).count();
            if n < MIN_EXAMPLES {
                why.push(format!("{n} example(s) in {}", lang.code()));
            }
        }
        if let Some(&(scored, right)) = cal.per_intent.get(&i)
            && scored >= 2
            && right * 2 < scored
        {
            why.push(format!(
                "{} of {scored} left-out examples taken for another intent",
                scored - right
            ));
        }
        if !why.is_empty() {
            needs.push(format!("  {}: {}", intent.id, why.join("; ")));
        }
    }
    if !needs.is_empty() {
        let _ = writeln!(
            s,
            "intents that need more examples (at least {MIN_EXAMPLES} per language, worded as customers ask):"
        );
        for line in needs.iter().take(MAX_LISTED) {
            let _ = writeln!(s, "{line}");
        }
        if needs.len() > MAX_LISTED {
            let _ = writeln!(
                s,
                "  … and {} more intents ({} in all)",
                needs.len() - MAX_LISTED,
                needs.len()
            );
        }
    }
    s
}

/// Intents listed as needing more examples, at most: a knowledge base of
/// thousands of thin intents gets a count, not a page per intent.
const MAX_LISTED: usize = 40;

/// Fewer example questions than this in a language: `kb check` asks for more.
const MIN_EXAMPLES: usize = 3;

pub fn import(file: &Path, output: &Path, dir: &Path) -> ExitCode {
    let data = match std::fs::read(file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("kefu: {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let text = match kb::import::import(file, &data) {
        Ok(t) => t,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            return ExitCode::FAILURE;
        }
    };
    // The new file must load together with the rest of the knowledge base.
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml") && p != output)
            .collect();
        paths.sort();
        for p in paths {
            if let Ok(t) = std::fs::read_to_string(&p) {
                files.push((p, t));
            }
        }
    }
    files.push((output.to_path_buf(), text.clone()));
    if let Err(e) = kb::load_files(&files) {
        eprintln!("{e}");
        eprintln!(
            "not written: fix the spreadsheet (or the files it conflicts with) and import again"
        );
        return ExitCode::FAILURE;
    }
    match std::fs::write(output, text) {
        Ok(()) => {
            println!(
                "{}: written; kefu serve reloads it within a second",
                output.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kefu: {}: {e}", output.display());
            ExitCode::FAILURE
        }
    }
}

/// What `kefu kb eval` shows besides its summary.
pub struct EvalOptions {
    /// Also try a range of answer thresholds.
    pub sweep: bool,
    /// Correct Mandarin sound-alikes as calls do (off: read as written, to compare).
    pub sound_alikes: bool,
    /// List every question not handled right.
    pub misses: bool,
}

pub fn evaluate(file: &Path, dir: &Path, options: EvalOptions, models: Option<&Path>) -> ExitCode {
    let EvalOptions {
        sweep,
        sound_alikes,
        misses,
    } = options;
    let m = match load(dir, models) {
        Ok(m) if sound_alikes => m,
        Ok(m) => m.without_sound_alikes(),
        Err(code) => return code,
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("kefu: {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let cases = match eval::parse(file, &text, &m) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            return ExitCode::FAILURE;
        }
    };
    let report = eval::evaluate(&m, &cases, None);
    print!("{}", eval::render(&report, 15));
    if misses {
        print!("{}", eval::render_misses(file, &report));
    }
    if sweep {
        println!(
            "threshold sweep (answer, clarify = answer - 0.1): overall accuracy, answered right, OOS F1"
        );
        for a in (20..=80).step_by(5) {
            let a = a as f32 / 100.0;
            let t = Thresholds {
                answer: a,
                clarify: (a - 0.1).max(0.0),
                ..m.kb.thresholds
            };
            let r = eval::evaluate(&m, &cases, Some(&t));
            println!(
                "  answer {a:.2}: overall {:.3}{}, answered right {:.1} %, asked back {}, OOS F1 {:.3}",
                r.overall_accuracy(),
                r.langs
                    .iter()
                    .map(|(lang, l)| format!(" {lang} {:.3}", l.overall_accuracy()))
                    .collect::<String>(),
                100.0 * r.answered_right_share(),
                r.clarified,
                r.oos_f1()
            );
        }
    }
    ExitCode::SUCCESS
}

/// A conversation in the terminal, showing the matched intent and confidence.
pub fn chat(dir: &Path, channel: Channel, lang: Lang, models: Option<&Path>) -> ExitCode {
    let m = match load(dir, models) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let mut conversation = Conversation::new(channel.medium(), lang);
    let now = chrono::Utc::now;
    let greeting = conversation.open(&m, None, now());
    println!("kefu> {}", greeting.text);
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    loop {
        let _ = write!(out, "you> ");
        let _ = out.flush();
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let reply = conversation.respond(&m, line, now());
        let why = match &reply.intent {
            Some(i) => format!("{:?}: {i} {:.2}", reply.kind, reply.confidence),
            None => format!("{:?} {:.2}", reply.kind, reply.confidence),
        };
        let others: Vec<String> = reply
            .candidates
            .iter()
            .take(3)
            .map(|(i, s)| format!("{i} {s:.2}"))
            .collect();
        println!("      [{why}; candidates: {}]", others.join(", "));
        if !reply.text.is_empty() {
            println!("kefu> {}", reply.text);
        }
        if let Some(q) = &reply.handover {
            println!("      [handed over to queue `{q}`; a person would take it from here]");
        }
    }
    ExitCode::SUCCESS
}
