//! `kefu keys`, `kefu backup`, `kefu restore`, `kefu calls`: the store's command-line
//! tools. They read the same settings as `kefu serve` (kefu.toml, --data) and may run
//! while it serves (except restore).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use kefu::config::Config;
use kefu::store::crypto::Keyring;

/// Where the store is: the settings file and the data directory.
#[derive(clap::Args)]
pub struct StoreArgs {
    /// Settings file (default: ./kefu.toml when present).
    #[arg(long, env = "KEFU_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory [default: data]
    #[arg(long)]
    data: Option<PathBuf>,
}

impl StoreArgs {
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut c = Config::load(self.config.as_deref())?;
        if let Some(d) = &self.data {
            c.data = d.clone();
        }
        Ok(c)
    }
}

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Create the keyring with its first key (refuses to replace one).
    Init(StoreArgs),
    /// Add a new key; new values are sealed with it (restart kefu to use it).
    Add(StoreArgs),
    /// Re-seal every stored value with the newest key, in batches; resumable.
    Rotate {
        #[command(flatten)]
        store: StoreArgs,
        /// Rows per transaction.
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
}

#[derive(clap::Subcommand)]
pub enum CallsCommand {
    /// Print a call's record (decrypted) as JSON.
    Show {
        call_id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Which customer: by id or by a phone number they called or texted from.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct Who {
    /// The customer id (as the API and exports show it).
    #[arg(long)]
    id: Option<String>,
    /// A phone number of theirs (found by its keyed hash).
    #[arg(long)]
    phone: Option<String>,
}

#[derive(clap::Subcommand)]
pub enum CustomersCommand {
    /// Print everything stored about a customer (decrypted) as JSON.
    Export {
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete everything stored about a customer.
    Erase {
        #[command(flatten)]
        who: Who,
        /// Really delete (there is no undo).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

async fn find(s: &kefu::store::Store, who: &Who) -> anyhow::Result<String> {
    use kefu::dialogue::conversations::{Identity, IdentityKind};
    if let Some(id) = &who.id {
        return Ok(id.clone());
    }
    let phone = who.phone.as_deref().unwrap_or_default();
    for kind in [IdentityKind::Phone, IdentityKind::Sms] {
        if let Some(c) = s.find_customer(&Identity::new(kind, phone)).await? {
            return Ok(c);
        }
    }
    bail!("no customer with the phone number {phone}")
}

pub fn customers(cmd: CustomersCommand) -> ExitCode {
    finish(match cmd {
        CustomersCommand::Export { who, store } => store.load().and_then(|c| {
            runtime()?.block_on(async {
                let s = c.open_store().await?;
                let customer = find(&s, &who).await?;
                let data = s.export_customer(&customer).await?;
                s.audit(&actor(), "customer.export", &customer, "").await?;
                s.close().await;
                println!("{}", serde_json::to_string_pretty(&data)?);
                Ok(())
            })
        }),
        CustomersCommand::Erase { who, yes, store } => store.load().and_then(|c| {
            if !yes {
                bail!("erasing cannot be undone: add --yes");
            }
            runtime()?.block_on(async {
                let s = c.open_store().await?;
                let customer = find(&s, &who).await?;
                let n = s.erase_customer(&customer, &actor()).await?;
                s.close().await;
                println!("erased customer {customer} ({n} rows)");
                Ok(())
            })
        }),
    })
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// First day (YYYY-MM-DD, UTC) [default: 7 days ago]
    #[arg(long)]
    from: Option<chrono::NaiveDate>,
    /// Last day, included (YYYY-MM-DD, UTC) [default: today]
    #[arg(long)]
    to: Option<chrono::NaiveDate>,
    /// Only this channel: phone, web, wechat, sms or app [default: all]
    #[arg(long)]
    channel: Option<String>,
    /// json (everything), csv (one table, see --table) or md (everything, as tables).
    #[arg(long, default_value = "md")]
    format: ReportFormat,
    /// The table --format csv prints: days, times, reasons, queues, agents, input,
    /// asr_confidence, intents, trend or unanswered.
    #[arg(long, default_value = "days")]
    table: String,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ReportFormat {
    Json,
    Csv,
    Md,
}

pub fn report(args: ReportArgs) -> ExitCode {
    finish(args.store.load().and_then(|c| {
        let today = chrono::Utc::now().date_naive();
        let to = args.to.unwrap_or(today);
        let from = args.from.unwrap_or(to - chrono::Duration::days(6));
        if from > to {
            bail!("--from must not be after --to");
        }
        if let Some(ch) = &args.channel
            && !kefu::store::analytics::CHANNELS.contains(&ch.as_str())
        {
            bail!("unknown --channel {ch:?}: one of phone, web, wechat, sms, app");
        }
        if !kefu::store::analytics::TABLES.contains(&args.table.as_str()) {
            bail!(
                "unknown --table {:?}: one of {}",
                args.table,
                kefu::store::analytics::TABLES.join(", ")
            );
        }
        runtime()?.block_on(async {
            let s = c.open_store().await?;
            let r = s.analytics(from, to, args.channel.as_deref()).await;
            s.close().await;
            let r = r?;
            match args.format {
                ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&r)?),
                ReportFormat::Csv => match r.csv(&args.table) {
                    Some(csv) => print!("{}", csv?),
                    None => bail!("unknown table {}", args.table),
                },
                ReportFormat::Md => print!("{}", r.markdown()),
            }
            Ok(())
        })
    }))
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// First day (YYYY-MM-DD, UTC) [default: yesterday]
    #[arg(long)]
    from: Option<chrono::NaiveDate>,
    /// Last day, included (YYYY-MM-DD, UTC) [default: --from]
    #[arg(long)]
    to: Option<chrono::NaiveDate>,
    /// Where to write: TABLE/day=YYYY-MM-DD/part-0.parquet under it
    #[arg(long)]
    out: std::path::PathBuf,
    /// Include what customers and agents wrote and said (the files are then
    /// personal data)
    #[arg(long)]
    with_text: bool,
    #[command(flatten)]
    store: StoreArgs,
}

pub fn export(args: ExportArgs) -> ExitCode {
    finish(args.store.load().and_then(|c| {
        let from = args
            .from
            .unwrap_or_else(|| chrono::Utc::now().date_naive() - chrono::Duration::days(1));
        let to = args.to.unwrap_or(from);
        if from > to {
            bail!("--from must not be after --to");
        }
        runtime()?.block_on(async {
            let s = c.open_store().await?;
            // Customers' words leave the store: audited before they do.
            if args.with_text {
                s.audit(
                    &actor(),
                    "export.parquet",
                    &args.out.display().to_string(),
                    &format!("{from} to {to}, with text"),
                )
                .await?;
            }
            let r = s.export_parquet(from, to, &args.out, args.with_text).await;
            s.close().await;
            let r = r?;
            for (table, rows) in &r.rows {
                println!("{table}: {rows} rows");
            }
            println!(
                "{} files under {} ({from} to {to})",
                r.files.len(),
                args.out.display()
            );
            Ok(())
        })
    }))
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

pub fn finish(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kefu: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn keys(cmd: KeysCommand) -> ExitCode {
    finish(match cmd {
        KeysCommand::Init(a) => a.load().and_then(|c| {
            init_keys(&c.key_path())?;
            audit_key_change(&c, "keys.init", 1);
            Ok(())
        }),
        KeysCommand::Add(a) => a.load().and_then(|c| {
            let id = add_key(&c.key_path())?;
            audit_key_change(&c, "keys.add", id);
            Ok(())
        }),
        KeysCommand::Rotate { store, batch } => store.load().and_then(|c| {
            runtime()?.block_on(async {
                let s = c.open_store().await?;
                let done = kefu::store::rotate::rotate(&s, batch, |table, n| {
                    eprintln!("{table}: {n} rows done");
                })
                .await?;
                let current = s.sealer().key_id();
                s.audit(
                    &actor(),
                    "keys.rotate",
                    &format!("key {current}"),
                    &format!("{} rows re-sealed", done.total()),
                )
                .await?;
                s.close().await;
                println!(
                    "every stored value is now sealed with key {current} ({} rows re-sealed, {} tickets re-indexed)",
                    done.total(),
                    done.reindexed
                );
                Ok(())
            })
        }),
    })
}

/// Who the audit log names for a command: "cli:$USER".
pub fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

/// Records a keyring change in the audit log. The key file is already written, so
/// a database that cannot be reached only earns a warning.
fn audit_key_change(c: &Config, action: &str, id: u16) {
    let r = runtime().and_then(|rt| {
        rt.block_on(async {
            let s = c.open_store().await?;
            let r = s.audit(&actor(), action, &format!("key {id}"), "").await;
            s.close().await;
            r
        })
    });
    if let Err(e) = r {
        eprintln!("kefu: warning: the key change is not in the audit log: {e:#}");
    }
}

fn init_keys(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        bail!(
            "{} exists; `kefu keys add` adds a key to it",
            path.display()
        );
    }
    write_private(
        path,
        &format!(
            "# kefu encryption keys: <id> <base64 key>; the last one seals new values.\n\
         # Keep a copy somewhere safe: without it the database cannot be read.\n{}",
            Keyring::new_line(1)
        ),
    )?;
    println!("wrote key 1 to {}", path.display());
    Ok(())
}

fn add_key(path: &Path) -> anyhow::Result<u16> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read {} (create it with `kefu keys init`)",
            path.display()
        )
    })?;
    let ring = Keyring::parse(&text, &path.display().to_string())?;
    let next = ring
        .ids()
        .into_iter()
        .max()
        .unwrap_or(0)
        .checked_add(1)
        .context("no key ids left")?;
    let mut text = text;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&Keyring::new_line(next));
    write_private(path, &text)?;
    println!(
        "added key {next} to {}; restart kefu, then run `kefu keys rotate`",
        path.display()
    );
    Ok(next)
}

/// Writes a file only its owner can read, replacing it atomically.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

pub fn backup(out: &Path, a: &StoreArgs) -> ExitCode {
    finish(a.load().and_then(|c| {
        runtime()?.block_on(async {
            let s = c.open_store().await?;
            kefu::store::backup::backup(&s, &c.database_url(), out).await?;
            s.audit(&actor(), "backup", &out.display().to_string(), "")
                .await?;
            s.close().await;
            println!("backup written to {}", out.display());
            Ok(())
        })
    }))
}

pub fn restore(file: &Path, force: bool, a: &StoreArgs) -> ExitCode {
    finish(a.load().and_then(|c| {
        runtime()?.block_on(async {
            let url = c.database_url();
            kefu::store::backup::restore(file, &url, force).await?;
            let s = c.open_store().await?;
            s.audit(&actor(), "restore", &file.display().to_string(), "")
                .await?;
            s.close().await;
            println!(
                "restored {} into {}",
                file.display(),
                kefu::store::redact(&url)
            );
            Ok(())
        })
    }))
}

pub fn calls(cmd: CallsCommand) -> ExitCode {
    finish(match cmd {
        CallsCommand::Show { call_id, store } => store.load().and_then(|c| {
            runtime()?.block_on(async {
                let s = c.open_store().await?;
                let record = s.call(&call_id).await?;
                s.close().await;
                match record {
                    Some(r) => {
                        println!("{}", serde_json::to_string_pretty(&r)?);
                        Ok(())
                    }
                    None => bail!("no call {call_id:?} in the store"),
                }
            })
        }),
    })
}
