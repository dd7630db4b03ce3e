//! End-to-end MCP tests against real npm peers (written by the e2e work).
