/**
 * The fix hint of audit and verify configuration errors: their flags and options are documented in
 * docs/audit.md (docs/cli.md lists the commands), not in docs/configuration.md (the library's options).
 */
export const AUDIT_HINT = 'Fix the flag or option named in the message: docs/audit.md documents every audit and verify flag and option (docs/cli.md lists the commands).';
