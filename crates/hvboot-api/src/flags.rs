//! Set operations for the protocol's bit-flag newtypes ([`VirtFlags`],
//! [`CpuFlags`], [`RequestFlags`]), which are generated as plain integer
//! newtypes in [`protocol`](crate::protocol).

use crate::protocol::{CpuFlags, CpuStartFlags, RequestFlags, VirtFlags};

macro_rules! flag_ops {
    ($($t:ident),*) => {$(
        impl $t {
            /// No bits.
            pub const EMPTY: Self = Self(0);

            /// Whether every bit of `other` is set in `self`.
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }

            /// The bits of both.
            pub const fn union(self, other: Self) -> Self {
                Self(self.0 | other.0)
            }

            /// `self` with the bits of `other` set when `on`.
            pub const fn with(self, other: Self, on: bool) -> Self {
                if on {
                    self.union(other)
                } else {
                    self
                }
            }
        }

        impl core::ops::BitOr for $t {
            type Output = Self;
            fn bitor(self, other: Self) -> Self {
                self.union(other)
            }
        }

        impl core::ops::BitOrAssign for $t {
            fn bitor_assign(&mut self, other: Self) {
                *self = self.union(other);
            }
        }
    )*};
}

flag_ops!(VirtFlags, CpuFlags, RequestFlags, CpuStartFlags);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let f = VirtFlags::SVM | VirtFlags::NPT;
        assert!(f.contains(VirtFlags::SVM));
        assert!(f.contains(VirtFlags::SVM | VirtFlags::NPT));
        assert!(!f.contains(VirtFlags::VMX));
        assert!(f.contains(VirtFlags::EMPTY));
        let mut g = CpuFlags::EMPTY
            .with(CpuFlags::BSP, true)
            .with(CpuFlags::X2APIC, false);
        g |= CpuFlags::ENABLED;
        assert_eq!(g, CpuFlags(0b101));
    }
}
