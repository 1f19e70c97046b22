//! The rtnetlink messages that make a fresh network namespace's every
//! address local: `lo` up, then `local 0.0.0.0/0 dev lo table local` and
//! `local ::/0 dev lo table local`. Hand-written bytes (a few fixed-size
//! headers, host byte order as netlink uses) rather than a crate, and the
//! reading of the kernel's acknowledgements. Pure: the namespace child
//! (`sys::netns`) sends the bytes and feeds the replies to [`acks`].

use nix::libc;

/// The loopback device's index: always 1 in a new network namespace
/// (`LOOPBACK_IFINDEX` in the kernel).
pub(crate) const LO_INDEX: u32 = 1;

/// The sequence numbers of the three requests in [`SETUP`], in order, so
/// that a refusal names the request it answers.
pub(crate) const SEQ_LINK_UP: u32 = 1;
pub(crate) const SEQ_ROUTE_V4: u32 = 2;
pub(crate) const SEQ_ROUTE_V6: u32 = 3;

const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;
const RTMSG: usize = 12;
const RTATTR_U32: usize = 8;
const LINK_LEN: usize = NLMSG_HDR + IFINFOMSG;
const ROUTE_LEN: usize = NLMSG_HDR + RTMSG + RTATTR_U32;

/// All three requests, one datagram: the kernel handles them in order and
/// acknowledges each (NLM_F_ACK), an error included, so the link is up
/// before the routes are added.
pub(crate) const SETUP_LEN: usize = LINK_LEN + 2 * ROUTE_LEN;

/// The bytes of [`SETUP_LEN`]: built once, before the fork, so the child
/// only sends them.
pub(crate) fn setup() -> [u8; SETUP_LEN] {
    let mut out = [0u8; SETUP_LEN];
    out[..LINK_LEN].copy_from_slice(&link_up(SEQ_LINK_UP, LO_INDEX));
    out[LINK_LEN..LINK_LEN + ROUTE_LEN].copy_from_slice(&local_route(SEQ_ROUTE_V4, libc::AF_INET as u8));
    out[LINK_LEN + ROUTE_LEN..].copy_from_slice(&local_route(SEQ_ROUTE_V6, libc::AF_INET6 as u8));
    out
}

/// `struct nlmsghdr`: length, type, flags, sequence, port id (0: the
/// kernel fills in the sender's).
fn header(out: &mut [u8], len: usize, kind: u16, flags: u16, seq: u32) {
    out[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    out[4..6].copy_from_slice(&kind.to_ne_bytes());
    out[6..8].copy_from_slice(&flags.to_ne_bytes());
    out[8..12].copy_from_slice(&seq.to_ne_bytes());
    out[12..16].copy_from_slice(&0u32.to_ne_bytes());
}

/// RTM_NEWLINK on an existing device: set IFF_UP in `ifi_flags`, and only
/// that bit (`ifi_change`), as `ip link set lo up` does.
fn link_up(seq: u32, index: u32) -> [u8; LINK_LEN] {
    let mut out = [0u8; LINK_LEN];
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    header(&mut out, LINK_LEN, libc::RTM_NEWLINK, flags, seq);
    // struct ifinfomsg: family (AF_UNSPEC), pad, type, index, flags, change.
    let body = &mut out[NLMSG_HDR..];
    body[4..8].copy_from_slice(&index.to_ne_bytes());
    body[8..12].copy_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    body[12..16].copy_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    out
}

/// RTM_NEWROUTE `local <any>/0 dev lo table local`: type RTN_LOCAL, scope
/// host, destination length 0 with no RTA_DST (the default route), the
/// table in `rtm_table` (255 fits the byte, so no RTA_TABLE), the device as
/// RTA_OIF. NLM_F_CREATE | NLM_F_EXCL, as `ip route add` sends.
fn local_route(seq: u32, family: u8) -> [u8; ROUTE_LEN] {
    let mut out = [0u8; ROUTE_LEN];
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    header(&mut out, ROUTE_LEN, libc::RTM_NEWROUTE, flags, seq);
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
    // type, flags (u32).
    let body = &mut out[NLMSG_HDR..];
    body[0] = family;
    body[4] = libc::RT_TABLE_LOCAL;
    body[5] = libc::RTPROT_BOOT;
    body[6] = libc::RT_SCOPE_HOST;
    body[7] = libc::RTN_LOCAL;
    // struct rtattr (length, type) and its u32: the output device.
    let attr = &mut body[RTMSG..];
    attr[0..2].copy_from_slice(&(RTATTR_U32 as u16).to_ne_bytes());
    attr[2..4].copy_from_slice(&libc::RTA_OIF.to_ne_bytes());
    attr[4..8].copy_from_slice(&LO_INDEX.to_ne_bytes());
    out
}

/// The acknowledgements in one datagram from the kernel, as (sequence,
/// error): error 0 is success, otherwise a positive errno. `Err(())` for
/// bytes that are not netlink messages; messages of other types (none are
/// expected) are skipped. Allocates nothing: the child calls it.
pub(crate) fn acks(buf: &[u8]) -> Acks<'_> {
    Acks { rest: buf }
}

/// The iterator [`acks`] returns.
#[derive(Debug)]
pub(crate) struct Acks<'a> {
    rest: &'a [u8],
}

impl Iterator for Acks<'_> {
    type Item = Result<(u32, i32), ()>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let u32_at = |b: &[u8], at: usize| {
                b.get(at..at + 4)
                    .and_then(|s| <[u8; 4]>::try_from(s).ok())
                    .map(u32::from_ne_bytes)
            };
            let (Some(len), Some(kind), Some(seq)) = (
                u32_at(self.rest, 0).map(|l| l as usize),
                self.rest.get(4..6).map(|s| u16::from_ne_bytes([s[0], s[1]])),
                u32_at(self.rest, 8),
            ) else {
                self.rest = &[];
                return Some(Err(()));
            };
            if len < NLMSG_HDR || len > self.rest.len() {
                self.rest = &[];
                return Some(Err(()));
            }
            let message = &self.rest[..len];
            // Messages are padded to 4 bytes (NLMSG_ALIGN).
            let next = (len + 3) & !3;
            self.rest = self.rest.get(next..).unwrap_or(&[]);
            if kind != libc::NLMSG_ERROR as u16 {
                continue;
            }
            // struct nlmsgerr: a negative errno (0 for an ACK), then the
            // request's header.
            let Some(error) = u32_at(message, NLMSG_HDR).map(|e| e as i32) else {
                return Some(Err(()));
            };
            return Some(Ok((seq, error.saturating_neg())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes as the uapi headers lay them out, written out by hand
    /// (little-endian: the machines this runs on).
    #[cfg(target_endian = "little")]
    #[test]
    fn setup_is_lo_up_then_two_local_default_routes() {
        let bytes = setup();
        #[rustfmt::skip]
        let link: [u8; 32] = [
            32, 0, 0, 0,  16, 0,  5, 0,  1, 0, 0, 0,  0, 0, 0, 0, // len, RTM_NEWLINK, REQUEST|ACK, seq 1, pid
            0, 0, 0, 0,  1, 0, 0, 0,  1, 0, 0, 0,  1, 0, 0, 0,    // AF_UNSPEC, index 1, IFF_UP, change IFF_UP
        ];
        #[rustfmt::skip]
        let route = |seq: u8, family: u8| -> [u8; 36] { [
            36, 0, 0, 0,  24, 0,  0x05, 0x06,  seq, 0, 0, 0,  0, 0, 0, 0, // RTM_NEWROUTE, REQUEST|ACK|EXCL|CREATE
            family, 0, 0, 0,  255, 3, 254, 2,  0, 0, 0, 0, // dst_len 0, table local, boot, scope host, RTN_LOCAL
            8, 0,  4, 0,  1, 0, 0, 0,                      // RTA_OIF = 1
        ] };
        assert_eq!(&bytes[..32], &link);
        assert_eq!(&bytes[32..68], &route(2, 2), "AF_INET");
        assert_eq!(&bytes[68..], &route(3, 10), "AF_INET6");
    }

    fn ack(seq: u32, error: i32) -> Vec<u8> {
        let mut m = vec![0u8; 36];
        header(&mut m, 36, libc::NLMSG_ERROR as u16, 0x100, seq);
        m[16..20].copy_from_slice(&error.to_ne_bytes());
        m
    }

    #[test]
    fn acks_give_each_sequence_and_its_positive_errno() {
        let mut buf = ack(1, 0);
        buf.extend(ack(2, -libc::EEXIST));
        let got: Vec<_> = acks(&buf).collect();
        assert_eq!(got, vec![Ok((1, 0)), Ok((2, libc::EEXIST))]);
    }

    #[test]
    fn acks_skip_other_messages_and_refuse_truncated_ones() {
        let mut buf = vec![0u8; 20];
        header(&mut buf, 20, libc::NLMSG_DONE as u16, 0, 9);
        buf.extend(ack(3, 0));
        assert_eq!(acks(&buf).collect::<Vec<_>>(), vec![Ok((3, 0))]);
        let whole = ack(1, 0);
        assert_eq!(acks(&whole[..30]).collect::<Vec<_>>(), vec![Err(())]);
        assert_eq!(acks(&whole[..6]).collect::<Vec<_>>(), vec![Err(())]);
        assert_eq!(acks(&[]).count(), 0);
    }
}
