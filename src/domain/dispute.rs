//! The conflict resolution protocol (concept, "Conflict Resolution Protocol"): a participant
//! raises a `dispute` on a review, a suggestion or a change; the session's
//! `conflictResolution` gene says who settles it (the driver, the navigator, or a majority
//! vote of the active participants); the outcome is recorded and announced.

/// A dispute was raised.
pub const DISPUTE_RAISED: &str = "dispute_raised";
/// A participant voted on a dispute settled by consensus.
pub const DISPUTE_VOTED: &str = "dispute_voted";
/// A dispute was settled; its payload says by whom, how and the outcome.
pub const DISPUTE_RESOLVED: &str = "dispute_resolved";
