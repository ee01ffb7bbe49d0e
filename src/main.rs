//! The `kefu` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use kefu::config::Config;
use kefu::dialplan::{AudioRoot, load_dir};
use kefu::media::prompt::PromptCache;
use kefu::speech::{Language, ModelDir, WhisperModel};

mod access_cli;
mod kb_cli;
mod store_cli;

#[derive(Parser)]
#[command(
    name = "kefu",
    version,
    about = "Voice-first customer-service server: SIP IVR, DTMF menus, one dialogue core"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct TranscribeArgs {
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Whisper model: base, base-q8_0, tiny.en, tiny.en-q8_0, or a ggml file path.
    #[arg(long, default_value = "base")]
    model: String,
    /// Language spoken: zh, en or auto.
    #[arg(long, default_value = "auto")]
    language: Language,
    /// Directory the set-up command fetched the models into.
    #[arg(long, env = "KEFU_MODELS", default_value = "models")]
    models: PathBuf,
    /// Threads for the decode.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print the whole result (confidence, timings) as JSON.
    #[arg(long)]
    json: bool,
    /// Favour this knowledge base's words (its intents' Mandarin titles), as a call
    /// answered from it does.
    #[arg(long, value_name = "DIR")]
    kb: Option<PathBuf>,
}

#[derive(clap::Args)]
struct SayArgs {
    text: String,
    /// Voice: en_US-joe-medium (Piper, English), kokoro-zh[:VOICE] (Kokoro, Mandarin),
    /// espeak-cmn, espeak-en.
    #[arg(long, default_value = "en_US-joe-medium")]
    voice: String,
    /// Output WAV file.
    #[arg(short, long)]
    output: PathBuf,
    /// Also print the phonemes the text is read with (Kokoro voices).
    #[arg(long)]
    phonemes: bool,
    /// Directory the set-up command fetched the models into.
    #[arg(long, env = "KEFU_MODELS", default_value = "models")]
    models: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Answer calls: SIP on --sip, health and API on --http.
    Serve(ServeArgs),
    /// Validate dialplans (and render their text prompts into the cache); prints
    /// file:line:col errors and exits 1 if any.
    Check(PlanArgs),
    /// Recognise the speech in WAV files (any rate) with Whisper; prints the text (with
    /// several files, one line per file: the file, a tab, the text).
    Transcribe(TranscribeArgs),
    /// Prompt tools.
    Prompts {
        #[command(subcommand)]
        command: PromptsCommand,
    },
    /// Knowledge-base tools.
    Kb {
        #[command(subcommand)]
        command: KbCommand,
    },
    /// Talk to the dialogue engine in the terminal (shows the matched intent and
    /// confidence of every reply).
    Chat {
        /// Knowledge-base directory.
        #[arg(long, default_value = "dialplans/kb")]
        kb: PathBuf,
        /// Which channel to answer as: web (chat answers), phone (voice answers), sms.
        #[arg(long, default_value = "web")]
        channel: ChatChannel,
        /// Language of the greeting (replies follow the customer's language).
        #[arg(long, default_value = "zh")]
        lang: String,
        #[command(flatten)]
        semantic: SemanticArgs,
    },
    /// Encryption keys: create, add, rotate stored values to the newest.
    Keys {
        #[command(subcommand)]
        command: store_cli::KeysCommand,
    },
    /// Write a consistent copy of the database while kefu serves.
    Backup {
        /// The backup file to write (must not exist).
        out: PathBuf,
        #[command(flatten)]
        store: store_cli::StoreArgs,
    },
    /// Restore a backup into the database (stop kefu first).
    Restore {
        file: PathBuf,
        /// Replace an existing database.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        store: store_cli::StoreArgs,
    },
    /// The supervisors' report for a date range: automation rate by day and
    /// channel, response and resolution times, hand-over reasons, queues and
    /// agents, keys or speech, hot topics and their trend, unanswered questions.
    Report(store_cli::ReportArgs),
    /// Export contacts, conversations, turns, calls and queue stays as Parquet,
    /// partitioned by day (for Spark, DuckDB, Hive)
    Export(store_cli::ExportArgs),
    /// A customer's stored data: export it, or erase it.
    Customers {
        #[command(subcommand)]
        command: store_cli::CustomersCommand,
    },
    /// Users: people who sign in to the web API, with their roles.
    Users {
        #[command(subcommand)]
        command: access_cli::UsersCommand,
    },
    /// Agents: the people calls and chats are handed to, and their phones.
    Agents {
        #[command(subcommand)]
        command: access_cli::AgentsCommand,
    },
    /// API tokens for programs (integrators, report readers).
    Tokens {
        #[command(subcommand)]
        command: access_cli::TokensCommand,
    },
    /// Stored call records.
    Calls {
        #[command(subcommand)]
        command: store_cli::CallsCommand,
    },
    /// Speak text with a TTS voice into an 8 kHz WAV file (as callers would hear it).
    Say(SayArgs),
}

#[derive(Subcommand)]
enum KbCommand {
    /// Validate the knowledge base; prints file:line:col errors and exits 1 if any.
    /// With the models present, also reports the understanding to expect: calibrated on
    /// the examples themselves, confusable intents, intents that need more examples.
    Check {
        #[arg(default_value = "dialplans/kb")]
        dir: PathBuf,
        #[command(flatten)]
        semantic: SemanticArgs,
    },
    /// Turn a spreadsheet (.xlsx, .xls, .ods, or CSV/TSV in UTF-8, UTF-16 or GBK;
    /// a header row naming id, title_en, title_zh, question_en, question_zh,
    /// answer_en, answer_zh, chat_en, chat_zh, tags, handover, notes, or their
    /// Chinese names 编号, 标题, 问题, 答案, 英文问题, 英文答案, …) into a
    /// knowledge-base file; written only if it loads with the rest.
    Import {
        file: PathBuf,
        /// The file to write [default: DIR/<sheet name>.toml].
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Knowledge-base directory.
        #[arg(long, default_value = "dialplans/kb")]
        kb: PathBuf,
    },
    /// Measure understanding on a labelled file (question<TAB>intent, `-` for out of
    /// scope): top-1 accuracy, out-of-scope precision/recall, most confused intents.
    Eval {
        file: PathBuf,
        #[arg(long, default_value = "dialplans/kb")]
        kb: PathBuf,
        /// Also try a range of answer thresholds.
        #[arg(long)]
        sweep: bool,
        /// Read Mandarin exactly as written (no sound-alike correction), to compare.
        #[arg(long)]
        no_sound_alikes: bool,
        /// Also list every question not handled right, with its line and what kefu did.
        #[arg(long)]
        misses: bool,
        #[command(flatten)]
        semantic: SemanticArgs,
    },
}

#[derive(clap::Args)]
struct SemanticArgs {
    /// Directory the set-up command fetched the models into (the sentence-embedding
    /// model of the semantic re-ranker).
    #[arg(long, env = "KEFU_MODELS", default_value = "models")]
    models: PathBuf,
    /// Match by words only, without the semantic re-ranker.
    #[arg(long)]
    lexical: bool,
}

impl SemanticArgs {
    fn models(&self) -> Option<&std::path::Path> {
        (!self.lexical).then_some(self.models.as_path())
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ChatChannel {
    Web,
    Phone,
    Sms,
}

#[derive(Subcommand)]
enum PromptsCommand {
    /// Render every text (`say:`) prompt of the dialplans into the cache that
    /// `kefu serve` reads, so the first caller does not wait for synthesis.
    Render(PlanArgs),
}

/// Where `check` and `prompts render` find dialplans and what they need to load them.
#[derive(clap::Args)]
struct PlanArgs {
    /// Dialplan directory.
    #[arg(default_value = "dialplans")]
    dir: PathBuf,
    /// Audio directory prompts are relative to.
    #[arg(long, default_value = "audio")]
    audio: PathBuf,
    /// Speech models, for text (`say:`) prompts.
    #[arg(long, env = "KEFU_MODELS", default_value = "models")]
    models: PathBuf,
    /// Where rendered text prompts are kept (as `kefu serve` keeps them).
    #[arg(long, default_value = "data")]
    data: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Settings file (default: ./kefu.toml when present).
    #[arg(long, env = "KEFU_CONFIG")]
    config: Option<PathBuf>,
    /// SIP address (UDP and TCP) [default: 127.0.0.1:5060]
    #[arg(long)]
    sip: Option<SocketAddr>,
    /// HTTP address for /healthz, /readyz and the API [default: 127.0.0.1:8080]
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Dialplan directory [default: dialplans]
    #[arg(long)]
    dialplans: Option<PathBuf>,
    /// Audio directory [default: audio]
    #[arg(long)]
    audio: Option<PathBuf>,
    /// Data directory [default: data]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Speech models directory [default: models]
    #[arg(long, env = "KEFU_MODELS")]
    models: Option<PathBuf>,
    /// Log format on standard output.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn init_logs(format: LogFormat) {
    // The WebRTC stack reports every state change of every peer connection at
    // info, and routine closing at warn (ICE): kefu logs what matters itself.
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEFU_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,rsipstack=warn,ort=warn,whisper_rs=warn,webrtc=warn,webrtc_ice=error,\
             webrtc_mdns=warn,dtls=warn,webrtc_srtp=warn,webrtc_sctp=warn,interceptor=warn",
        )
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Everything kefu writes (database, reports, drafts, recordings, caches, backups,
    // exports) may hold customers' words: files 0600 and directories 0700.
    // SAFETY: umask only sets this process's file-creation mask; no threads yet.
    unsafe {
        libc::umask(0o077);
    }
    // Before any thread starts: it may set an environment variable.
    kefu::speech::tts::configure_espeak_data();
    match cli.command {
        Command::Say(args) => say(&args),
        Command::Transcribe(args) => transcribe(&args),
        Command::Kb { command } => match command {
            KbCommand::Check { dir, semantic } => kb_cli::check(&dir, semantic.models()),
            KbCommand::Import { file, output, kb } => {
                let stem = file
                    .file_stem()
                    .map_or_else(|| "imported".into(), |s| s.to_string_lossy().into_owned());
                let output = output.unwrap_or_else(|| kb.join(format!("{stem}.toml")));
                kb_cli::import(&file, &output, &kb)
            }
            KbCommand::Eval {
                file,
                kb,
                sweep,
                no_sound_alikes,
                misses,
                semantic,
            } => kb_cli::evaluate(
                &file,
                &kb,
                kb_cli::EvalOptions {
                    sweep,
                    sound_alikes: !no_sound_alikes,
                    misses,
                },
                semantic.models(),
            ),
        },
        Command::Chat {
            kb,
            channel,
            lang,
            semantic,
        } => {
            let channel = match channel {
                ChatChannel::Web => kefu::dialogue::conversations::Channel::Web,
                ChatChannel::Phone => kefu::dialogue::conversations::Channel::Phone,
                ChatChannel::Sms => kefu::dialogue::conversations::Channel::Sms,
            };
            let Some(lang) = kefu::dialogue::Lang::from_code(&lang) else {
                eprintln!("kefu: --lang must be zh or en");
                return ExitCode::FAILURE;
            };
            kb_cli::chat(&kb, channel, lang, semantic.models())
        }
        Command::Keys { command } => store_cli::keys(command),
        Command::Backup { out, store } => store_cli::backup(&out, &store),
        Command::Restore { file, force, store } => store_cli::restore(&file, force, &store),
        Command::Calls { command } => store_cli::calls(command),
        Command::Users { command } => access_cli::users(command),
        Command::Tokens { command } => access_cli::tokens(command),
        Command::Agents { command } => access_cli::agents(command),
        Command::Customers { command } => store_cli::customers(command),
        Command::Report(args) => store_cli::report(args),
        Command::Export(args) => store_cli::export(args),
        Command::Check(plans)
        | Command::Prompts {
            command: PromptsCommand::Render(plans),
        } => check(plans),
        Command::Serve(args) => {
            init_logs(args.log_format);
            let config = match Config::load(args.config.as_deref()) {
                Ok(mut c) => {
                    if let Some(v) = args.sip {
                        c.sip = v;
                    }
                    if let Some(v) = args.http {
                        c.http = v;
                    }
                    if let Some(v) = args.dialplans {
                        c.dialplans = v;
                    }
                    if let Some(v) = args.audio {
                        c.audio = v;
                    }
                    if let Some(v) = args.data {
                        c.data = v;
                    }
                    if let Some(v) = args.models {
                        c.models = v;
                    }
                    c
                }
                Err(e) => {
                    eprintln!("kefu: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("kefu: cannot start runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(kefu::server::serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("kefu: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn transcribe(args: &TranscribeArgs) -> ExitCode {
    let TranscribeArgs {
        files,
        model,
        language,
        models,
        threads,
        json,
        kb,
    } = args;
    let (language, threads, json) = (*language, *threads, *json);
    let models = ModelDir(models.clone());
    let run = || -> anyhow::Result<()> {
        // What a call answered from this knowledge base tells the recogniser.
        let hint = match kb {
            Some(dir) => kefu::dialogue::Matcher::new(std::sync::Arc::new(
                kefu::dialogue::kb::load_dir(dir)?,
            ))
            .expected_words(kefu::dialogue::Lang::Zh),
            None => None,
        };
        let hint = hint.as_deref();
        let path = models.whisper(model)?;
        let model = std::sync::Arc::new(WhisperModel::load(&path)?);
        let mut recognizer = model.recognizer(threads)?;
        for file in files {
            let (mono, rate) = kefu::media::wav::read_mono(file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let audio =
                kefu::media::wav::resample(&mono, rate, kefu::speech::asr::SAMPLE_RATE as u32)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let t = recognizer
                .transcribe_unless(&audio, language, hint, &|| false)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let text = if json {
                serde_json::to_string(&t)?
            } else {
                t.text
            };
            if files.len() > 1 {
                println!("{}\t{text}", file.display());
            } else {
                println!("{text}");
            }
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kefu: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn say(
    SayArgs {
        text,
        voice,
        output,
        phonemes,
        models,
    }: &SayArgs,
) -> ExitCode {
    let models = &ModelDir(models.clone());
    use kefu::speech::tts::{Voice, sentences, write_wav};
    let run = || -> anyhow::Result<()> {
        kefu::speech::models::init_onnx_runtime(&models.onnxruntime()?)?;
        let voice = Voice::load(voice, models)?;
        let mut audio = Vec::new();
        for sentence in sentences(text) {
            if *phonemes && let Some(p) = voice.phonemes(&sentence) {
                println!("{p}");
            }
            audio.extend(voice.synthesize(&sentence)?);
        }
        write_wav(output, &audio).map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?;
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kefu: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads (validates) every dialplan of `dir`, rendering text prompts into the cache.
fn check(
    PlanArgs {
        dir,
        audio,
        models,
        data,
    }: PlanArgs,
) -> ExitCode {
    // Rendering every text prompt is part of checking, and leaves them cached
    // for `kefu serve` (the same as pre-rendering them).
    let speaker = kefu::speech::tts::Speaker::new(ModelDir(models), Some(data.join("tts-cache")));
    let prompts = PromptCache::with_speaker(std::sync::Arc::new(speaker));
    match load_dir(&dir, &AudioRoot(audio), &prompts) {
        Ok(reg) => {
            for plan in &reg.plans {
                println!(
                    "{}: ok ({} nodes, numbers {:?}{})",
                    plan.file.display(),
                    plan.nodes.len(),
                    plan.numbers,
                    if plan.is_default { ", default" } else { "" }
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{} error(s)", e.diagnostics.len());
            ExitCode::FAILURE
        }
    }
}
