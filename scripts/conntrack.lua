-- ct-lua conntrack: a drop-in for conntrack 1.4.7 (see lua/conntrack/cli/init.lua).
os.exit(require("conntrack.cli").main(arg, io.stdout, io.stderr), true)
