-- wrk script: counts the requests wrk writes, over all its threads.
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    sent = 0
end

function request()
    sent = sent + 1
    return wrk.format()
end

function done(summary, latency, requests)
    local total = 0
    for _, thread in ipairs(threads) do
        total = total + thread:get("sent")
    end
    io.write(string.format("sent %d\n", total))
    local e = summary.errors
    io.write(string.format("errors connect %d read %d write %d status %d timeout %d\n",
        e.connect, e.read, e.write, e.status, e.timeout))
end
