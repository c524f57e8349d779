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
            app.database()
        );
        let _ = std::io::stdout().flush();
        app.run_until_stopped()
            .await
            .map_err(|e| format!("server failed: {e}"))?;
        log::info!("stopped cleanly");
        Ok(())
    })
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
