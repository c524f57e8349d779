//! Exporting a session: its summary and timeline as Markdown, HTML or JSON.

#[allow(unused_imports)]
use super::imports::*;
use crate::domain::export::{Content, Format};

/// Export the session as the caller sees it (a participant: its own view; the operator:
/// everything). Any status: completed and paused sessions export too.
#[derive(Debug, Message)]
#[rtype(result = "Result<Exported, HubError>")]
pub struct ExportSession {
    pub credential: Credential,
    pub format: Format,
    /// With the diffs of recorded changes and suggestions.
    pub include_code: bool,
}

/// The export: `content` is the text (Markdown, HTML) or the JSON document.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    pub format: Format,
    pub content: Content,
}
