-- ct-lua conntrack: a drop-in for conntrack 1.4.7 (see lua/conntrack/cli/init.lua).

-- Start-up (loading the CLI's modules, parsing the command line) makes next to no garbage,
-- yet the collector at the command's pause, stepping as the heap grew, spent 8% of `-G`'s
-- instructions on it: a cycle every time the heap had grown by half. So start-up runs at a
-- pause of 400% (two cycles), and the command at 150% (from its first cycle's end, when
-- the collector next sets its threshold): the command's garbage is parsed lines and
-- entries, and a collection when the heap has grown by half, not doubled, keeps -R's peak
-- RSS at about 3.4 MiB instead of 4 (measured at no cost in time).
collectgarbage("incremental", 400)
local function ready() collectgarbage("incremental", 150) end

-- Nothing of the state needs finalizing at exit (the kernel closes the sockets, exit()
-- flushes the output), so the state is left to the process's end: closing it was a tenth
-- of `-G`.
os.exit(require("conntrack.cli").main(arg, io.stdout, io.stderr, ready))
