//! The policy and the contract as the issues fix them, written out here
//! rather than imported, so the tests stay an independent check.

/// The six proxy variables the child gets (docs/contract.md).
pub const PROXY_VARS: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Tools the issue requires in enforce mode.
pub const ENFORCED: &[&str] = &[
    "brew", "npm", "npx", "pnpm", "yarn", "pip", "pip3", "uv", "cargo", "gem", "bundle", "go", "composer",
];
/// Tools the issue requires in observe mode.
pub const OBSERVED: &[&str] = &["aws", "gh", "kubectl", "docker", "tailscale"];
/// npm's registry: on npm's allowlist, port 443.
pub const NPM_REGISTRY: &str = "registry.npmjs.org:443";
/// An observe-mode tool: everything is allowed, IP literals included, and
/// no address is range-checked, so loopback targets can be dialled.
pub const OBSERVER: &str = "aws";
