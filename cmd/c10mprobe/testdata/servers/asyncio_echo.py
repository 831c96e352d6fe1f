# An asyncio echo server, one coroutine per connection. The root tests probe
# it with c10mprobe run --target. Usage: asyncio_echo.py ADDR PORT [BACKLOG]
import asyncio, sys
async def handle(r, w):
    try:
        while True:
            d = await r.read(65536)
            if not d:
                break
            w.write(d)
            await w.drain()
    except Exception:
        pass
    w.close()
async def main():
    s = await asyncio.start_server(handle, sys.argv[1], int(sys.argv[2]), backlog=int(sys.argv[3]) if len(sys.argv) > 3 else 100)
    async with s:
        await s.serve_forever()
asyncio.run(main())
