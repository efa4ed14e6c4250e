// Package login is the iSCSI login engine (RFC 7143 §6, §11.12, §11.13,
// §12, §13): the security stage with CHAP (RFC 1994, RFC 7143 §12.1.3),
// the operational stage with a declarative table of every RFC 7143 key,
// and the transition to the full feature phase. It also carries the small
// Text-exchange helper that discovery (SendTargets) uses.
//
// The engine never touches a socket. It is written against Transport, a
// PDU-at-a-time interface, so the same code logs in over a TCP connection
// (the userspace initiator's own transport, whose pdu.Reader and socket
// reader then serve the full feature phase; NewConnTransport is the plain
// one, for tools and tests) and over the kernel's netlink
// SEND_PDU/RECV_PDU channel (used by the kernel binding), exactly as
// iscsid does for iscsi_tcp.
//
// Its configuration and results use the module's shared vocabulary
// (iscsi.CHAP, iscsi.Negotiated) and every failure is one of package
// iscsi's login errors (*iscsi.LoginError, *iscsi.RedirectError,
// iscsi.ErrLoginProtocol, ...): the engine defines none of its own.
//
// Secrets never appear in logs, errors or %v output: iscsi.CHAP formats
// itself with the secrets replaced, and the debug log of the exchanged keys
// shows CHAP_R and CHAP_C values as "<redacted>".
package login
