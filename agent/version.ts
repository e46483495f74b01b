// Reported by Health and GuestDetails, so the host can tell which agent a guest image carries.
export const AGENT_VERSION = '0.1.0';
