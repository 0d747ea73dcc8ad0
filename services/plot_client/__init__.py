"""Plot client role: owns farms (plots), audits and proves, requests plotting from plot-servers."""
