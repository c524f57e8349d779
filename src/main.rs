//! The `collab-hub` command line: parses flags and runs a subcommand. Everything else is in the
//! library.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use collab_hub::config::{Cli, Command};
use collab_hub::{Application, Settings, client, store};
use serde_json::json;

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let result = match cli.command.clone().unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.settings),
        Command::Migrate => migrate(&cli.settings),
        Command::Token {
            session,
            participant,
            hub_url,
        } => token(&cli.settings, &session, &participant, hub_url),
        Command::Export {
            session,
            format,
            include_code,
            out,
            hub_url,
        } => export(
            &cli.settings,
            &session,
            &format,
            include_code,
            out.as_deref(),
            hub_url,
        ),
        Command::Hook(args) => {
            if let Some(out) = collab_hub::cli::hook::run(&args) {
                println!("{out}");
            }
            Ok(())
        }
        Command::Connect(args) => connect(&cli.settings, args),
        Command::Backup { file, session } => backup(&cli.settings, &file, &session),
        Command::Restore { file, replace } => restore(&cli.settings, &file, replace),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("collab-hub: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(settings: Settings) -> Result<(), String> {
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        // Scripts and tests read this line to find the port (with --bind 127.0.0.1:0).
        println!(
            "collab-hub {} listening on http://{} (database: {})",
            env!("CARGO_PKG_VERSION"),
            app.addr(),
            app.database(),
        );
        let _ = std::io::stdout().flush();
        app.run_until_stopped()
            .await
            .map_err(|e| format!("server failed: {e}"))?;
        log::info!("stopped cleanly");
        Ok(())
    })
}

/// `collab-hub connect`: see `collab_hub::cli::connect`.
fn connect(
    settings: &Settings,
    mut args: collab_hub::cli::connect::ConnectArgs,
) -> Result<(), String> {
    args.home = std::env::var_os("HOME").map(Into::into).unwrap_or_default();
    args.dir =
        std::fs::canonicalize(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    args.operator_token = settings.operator_token.clone();
    args.exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "collab-hub".into());
    print!("{}", collab_hub::cli::connect::run(&args)?);
    Ok(())
}

fn migrate(settings: &Settings) -> Result<(), String> {
    let target = settings.db_target()?;
    let applied = store::migrate(&target)?;
    if applied.is_empty() {
        println!("{}: schema is up to date", target.redacted());
    } else {
        println!("{}: applied {}", target.redacted(), applied.join(", "));
    }
    Ok(())
}

/// `collab-hub backup FILE [--session ID]...` (format and guarantees: `store::backup`).
fn backup(settings: &Settings, file: &std::path::Path, sessions: &[String]) -> Result<(), String> {
    let target = settings.db_target()?;
    let done = store::backup::backup(&target, file, sessions)?;
    println!(
        "backed up {} session{} ({} rows) to {}",
        store::backup::grouped(done.sessions),
        if done.sessions == 1 { "" } else { "s" },
        store::backup::grouped(done.rows),
        file.display()
    );
    Ok(())
}

/// `collab-hub restore FILE [--replace]`: all or nothing, never beside a running hub.
fn restore(settings: &Settings, file: &std::path::Path, replace: bool) -> Result<(), String> {
    let target = settings.db_target()?;
    let done = store::backup::restore(&target, file, replace)?;
    println!(
        "restored {} session{} ({} rows) from {} into {}{}",
        store::backup::grouped(done.sessions),
        if done.sessions == 1 { "" } else { "s" },
        store::backup::grouped(done.rows),
        file.display(),
        target.redacted(),
        if done.replaced > 0 {
            format!(", replacing {}", done.replaced)
        } else {
            String::new()
        }
    );
    Ok(())
}

fn token(
    settings: &Settings,
    session: &str,
    participant: &str,
    hub_url: Option<String>,
) -> Result<(), String> {
    let base = hub_url.unwrap_or_else(|| format!("http://{}", settings.bind));
    let url = format!("{}/mcp/session/{session}/token", base.trim_end_matches('/'));
    let body = json!({ "participant": participant });
    let (status, answer) = client::request(
        "POST",
        &url,
        settings.operator_token.as_deref(),
        Some(&body),
    )?;
    let Some(token) = answer["token"].as_str().filter(|_| status == 200) else {
        let why = answer["error"]["message"]
            .as_str()
            .unwrap_or("unexpected answer");
        return Err(format!("{url}: {status}: {why}"));
    };
    println!("{token}");
    eprintln!(
        "Configure the agent with header  Authorization: Bearer {token}\n  Claude Code: claude mcp add --transport http collab-hub {base}/mcp --header \"Authorization: Bearer {token}\""
    );
    Ok(())
}

/// `collab-hub export SESSION`: asks the running hub (`POST /mcp/session/export`) and writes the
/// answer's `content` as it is (Markdown, HTML) or pretty-printed (JSON).
fn export(
    settings: &Settings,
    session: &str,
    format: &str,
    include_code: bool,
    out: Option<&std::path::Path>,
    hub_url: Option<String>,
) -> Result<(), String> {
    let base = hub_url.unwrap_or_else(|| format!("http://{}", settings.bind));
    let url = format!("{}/mcp/session/export", base.trim_end_matches('/'));
    let body = json!({ "sessionId": session, "format": format, "includeCode": include_code });
    let (status, answer) = client::request(
        "POST",
        &url,
        settings.operator_token.as_deref(),
        Some(&body),
    )?;
    let text = match (&answer["content"], status) {
        (serde_json::Value::String(text), 200) => text.clone(),
        (doc @ serde_json::Value::Object(_), 200) => {
            let mut text = serde_json::to_string_pretty(doc).map_err(|e| e.to_string())?;
            text.push('\n');
            text
        }
        _ => {
            let why = answer["error"]["message"]
                .as_str()
                .unwrap_or("unexpected answer");
            return Err(format!("{url}: {status}: {why}"));
        }
    };
    match out {
        Some(path) => {
            std::fs::write(path, &text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            eprintln!("wrote {} ({} bytes)", path.display(), text.len());
        }
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .map_err(|e| format!("cannot write to stdout: {e}"))?,
    }
    Ok(())
}
