//! IP truncation (`ip_half`): the only place that sees a full client address, and it keeps half.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The first half of an address: IPv4 keeps its first two bytes (`192.168.0.0`), IPv6 its first
/// 48 bits (`2001:db8:1234::`). An IPv4-mapped IPv6 address is treated as the IPv4 address.
pub fn ip_half(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(half_v4(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(half_v4(v4)),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
            }
        },
    }
}

fn half_v4(ip: Ipv4Addr) -> Ipv4Addr {
    let o = ip.octets();
    Ipv4Addr::new(o[0], o[1], 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_half() {
        let t = |s: &str| ip_half(s.parse().unwrap()).to_string();
        assert_eq!(t("192.168.37.201"), "192.168.0.0");
        assert_eq!(t("2001:db8:1234:5678:9abc::1"), "2001:db8:1234::");
        assert_eq!(t("::ffff:10.20.30.40"), "10.20.0.0");
        assert_eq!(t("::1"), "::");
    }
}
