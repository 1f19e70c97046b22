//! The fake tools' network client (written in the next step).
