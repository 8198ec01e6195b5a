/*
** The scheduler under bsdsocket.loop: the hot path of the loop in C.
**
** lua/bsdsocket/loop.lua keeps the interface (argument checks, join and
** sleep outside tasks, error reports); this file keeps the state and runs
** it: which task waits for which descriptor, the run queue, the deadlines,
** the poller, and the resuming of tasks with lua_resume. Its structure:
**
** - A task is a coroutine with a record in an array (task ids are indices;
**   free records form a list). The coroutine is anchored in a Lua table by
**   id, and S._tasks maps it to its id.
** - While resume() runs a task, the state the socket methods share with
**   the loop (bsd_shared) names its thread. A socket call there that must
**   wait links the task as a waiter itself (directwait) and yields no
**   values. Other waits (loop.wait, a TLS stream, a coroutine of S._tasks
**   resumed by hand) yield "bsdsocket.wait", obj, events, deadline, which
**   dowait reads.
** - A task is in one state at a time: queued (to be resumed with a value
**   from the top of the loop), waiting on a descriptor (in that
**   descriptor's chain of readers or writers, maybe with a deadline),
**   sleeping (a deadline only), joining another task (in its chain of
**   joiners, maybe with a deadline), or running.
** - Descriptors have slots in an array indexed by descriptor: the newest
**   reader and writer (older ones chained behind them), whether the poller
**   has the descriptor, and the socket object that registered it (whose
**   readiness hints a report updates, see recvinto in socket.c).
** - Deadlines sit in a binary heap of task ids keyed by time, then by the
**   order they were set in (equal deadlines fire in that order).
** - run() resumes the queued tasks, then the ones whose deadline passed,
**   then waits on the poller (not at all when tasks are queued, else until
**   the nearest deadline) and resumes the tasks waiting on each descriptor
**   reported ready, in the same pass. What a resumed task yields says what
**   it waits for next; a task that ends leaves its outcome for join.
** - On epoll (and kqueue) a descriptor is registered once, edge-triggered
**   for both directions, when a task first waits on it; a wait then costs
**   no system call. On poll(2) each wait arms a one-shot registration (a
**   change in memory only). Closing (or collecting) a socket the loop has
**   seen runs closehook before the descriptor goes: the registration is
**   removed and the tasks waiting on it are queued to see it closed.
*/
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <string.h>

#include "poller.h"

#define LOOP_MT "bsdsocket.scheduler"

#ifndef POLLRDHUP
#define POLLRDHUP 0
#endif

/* revents that wake a reader / a writer (hang-up and error wake both) */
#define RWAKE (POLLIN | POLLPRI | POLLHUP | POLLERR | POLLNVAL)
#define WWAKE (POLLOUT | POLLHUP | POLLERR | POLLNVAL)

enum tstate { T_FREE, T_QUEUED, T_WAITING, T_SLEEPING, T_JOINING, T_RUNNING };

/* what a queued task is resumed with */
enum rvalue {
  RV_START,   /* its first run: the arguments of spawn are on its stack */
  RV_TRUE,    /* ready (or a sleep or join that ended) */
  RV_FALSE,   /* its deadline passed */
  RV_NIL,     /* it yielded something else: run again after the others */
  RV_CLOSED,  /* the socket it waited on was closed */
  RV_VALUE    /* the value in the msgs table: loop.cancel's message, or
              ** the failure of a wait the poller refused */
};

typedef struct task {
  lua_State *co;
  unsigned char state;   /* enum tstate */
  unsigned char rv;      /* enum rvalue, while queued */
  unsigned char ev;      /* waiting: 0 read, 1 write */
  unsigned char stopon;  /* its end stops run() (join outside tasks) */
  int fd;                /* waiting: the descriptor; joining: the target;
                         ** RV_START: the arguments on its stack */
  int next;              /* the next (older) waiter on the same descriptor
                         ** or target; the next free record */
  int qnext;             /* the next task in the run queue */
  int joiners;           /* the newest task joining this one */
  int hidx;              /* its place in the heap, 0 when none */
  double deadline;
  unsigned seq;          /* the order deadlines were set in */
  unsigned mark;         /* in the chain that wakeall is resuming */
} task;

typedef struct slot {
  int head[2];           /* newest reader, writer; -1 when none */
  const void *who;       /* the object that registered it */
  unsigned char issock;  /* who is a bsd_socket (whose hints a report
                         ** updates) */
  unsigned char reg;     /* epoll: registered; poll: the armed events */
} slot;

typedef struct sched {
  /* first: told of every descriptor bsdsocket closes (util.c), sockets'
  ** and the resolver's wake descriptors alike (see closewatched) */
  bsd_closewatch watch;
  bsd_pollbe *be;        /* the poller backend (poller.h) */
  int edge;              /* registrations stay (epoll, kqueue) */
  task *t;
  int tcap, nfree, freelist;
  int ntasks;            /* not finished */
  int qhead, qtail;      /* run queue, -1 when empty */
  int *heap;             /* 1-based */
  int hn, hcap;
  unsigned seq;
  slot *slots;
  int nslots;
  int running, stopping;
  const char *waitstr;   /* "bsdsocket.wait", kept in UV_WAITSTR */
  unsigned id;           /* which scheduler of the state (bsd_socket) */
  unsigned mark;         /* wakeall's last mark */
  int haserror;          /* UV_ERROR holds an error for run() to raise */
  int qlen;              /* tasks in the run queue */
  int current;           /* the task being resumed, -1 when none */
  bsd_shared *sh;        /* what the socket methods share (bsdsocket.h) */
  bsd_closehook hook;
} sched;

/* user values of the scheduler */
enum { UV_COS = 1, UV_MSGS, UV_OUTCOME, UV_REPORT, UV_TASKS,
       UV_WAITSTR, UV_FDOF, UV_ERROR, NUV = UV_ERROR };

/* what a task yields for sleep and join, and what a wait on a closed
** socket is resumed with: addresses known to loop.lua through fields */
static const char sleepkey = 's', joinkey = 'j', closedkey = 'c';
/* registry key of the number of schedulers made in this state */
static const char schedidkey = 'n';

/* ---- memory ---- */

static void *resize(lua_State *L, void *block, size_t osize, size_t nsize) {
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  void *nb = f(ud, block, osize, nsize);
  if (nb == NULL && nsize > 0) luaL_error(L, "not enough memory");
  return nb;
}

/* arrays grow by half: a server's memory per connection counts them */
static int grow(int cap, int need) {
  if (cap < 16) cap = 16;
  while (cap < need) cap += cap / 2;
  return cap;
}

static sched *checksched(lua_State *L) {
  return (sched *)luaL_checkudata(L, 1, LOOP_MT);
}

/* ---- the run queue ---- */

static void enqueue(sched *S, int id, int rv) {
  task *t = &S->t[id];
  t->state = T_QUEUED;
  t->rv = (unsigned char)rv;
  t->qnext = -1;
  S->qlen++;
  if (S->qtail < 0) S->qhead = id;
  else S->t[S->qtail].qnext = id;
  S->qtail = id;
}

static void dequeue(sched *S, int id) {
  int prev = -1, cur = S->qhead;
  while (cur >= 0 && cur != id) {
    prev = cur;
    cur = S->t[cur].qnext;
  }
  if (cur < 0) return;
  S->qlen--;
  if (prev < 0) S->qhead = S->t[id].qnext;
  else S->t[prev].qnext = S->t[id].qnext;
  if (S->qtail == id) S->qtail = prev;
}

/* ---- deadlines ---- */

static int before(const sched *S, int a, int b) {
  const task *x = &S->t[a], *y = &S->t[b];
  /* seq may wrap: compared as a difference */
  return x->deadline < y->deadline
         || (x->deadline == y->deadline && (int)(x->seq - y->seq) < 0);
}

static void hplace(sched *S, int i, int id) {
  S->heap[i] = id;
  S->t[id].hidx = i;
}

static void hup(sched *S, int i) {
  int id = S->heap[i];
  while (i > 1 && before(S, id, S->heap[i / 2])) {
    hplace(S, i, S->heap[i / 2]);
    i /= 2;
  }
  hplace(S, i, id);
}

static void hdown(sched *S, int i) {
  int id = S->heap[i];
  for (;;) {
    int c = 2 * i;
    if (c > S->hn) break;
    if (c < S->hn && before(S, S->heap[c + 1], S->heap[c])) c++;
    if (!before(S, S->heap[c], id)) break;
    hplace(S, i, S->heap[c]);
    i = c;
  }
  hplace(S, i, id);
}

/* room in the heap for one more deadline */
static void reserveheap(lua_State *L, sched *S) {
  if (S->hn + 1 >= S->hcap) {
    int ncap = grow(S->hcap, S->hn + 2);
    S->heap = (int *)resize(L, S->heap, sizeof(int) * (size_t)S->hcap,
                            sizeof(int) * (size_t)ncap);
    S->hcap = ncap;
  }
}

static void settimer(lua_State *L, sched *S, int id, double deadline) {
  task *t = &S->t[id];
  reserveheap(L, S);
  t->deadline = deadline;
  t->seq = S->seq++;
  S->heap[++S->hn] = id;
  t->hidx = S->hn;
  hup(S, S->hn);
}

static void cleartimer(sched *S, int id) {
  int i = S->t[id].hidx, last;
  if (i == 0) return;
  S->t[id].hidx = 0;
  last = S->heap[S->hn--];
  if (i > S->hn) return;
  hplace(S, i, last);
  if (i > 1 && before(S, last, S->heap[i / 2])) hup(S, i);
  else hdown(S, i);
}

/* ---- descriptors ---- */

static slot *getslot(lua_State *L, sched *S, int fd) {
  if (fd >= S->nslots) {
    int i, ncap = grow(S->nslots, fd + 1);
    S->slots = (slot *)resize(L, S->slots, sizeof(slot) * (size_t)S->nslots,
                              sizeof(slot) * (size_t)ncap);
    for (i = S->nslots; i < ncap; i++) {
      S->slots[i].head[0] = S->slots[i].head[1] = -1;
      S->slots[i].who = NULL;
      S->slots[i].issock = 0;
      S->slots[i].reg = 0;
    }
    S->nslots = ncap;
  }
  return &S->slots[fd];
}

/* takes id out of the chain that starts at *head */
static void unchain(sched *S, int *head, int id) {
  while (*head >= 0 && *head != id) head = &S->t[*head].next;
  if (*head == id) *head = S->t[id].next;
  S->t[id].next = -1;
}

/* ---- tasks ---- */

static int newtask(lua_State *L, sched *S) {
  int id;
  if (S->freelist < 0) {
    int i, ncap = grow(S->tcap, S->tcap + 1);
    S->t = (task *)resize(L, S->t, sizeof(task) * (size_t)S->tcap,
                          sizeof(task) * (size_t)ncap);
    for (i = ncap - 1; i >= S->tcap; i--) {
      S->t[i].state = T_FREE;
      S->t[i].next = S->freelist;
      S->freelist = i;
    }
    S->tcap = ncap;
  }
  id = S->freelist;
  S->freelist = S->t[id].next;
  memset(&S->t[id], 0, sizeof(task));
  S->t[id].next = S->t[id].qnext = S->t[id].joiners = -1;
  return id;
}

/* the id of the task co (at idx), or -1 */
static int taskid(lua_State *L, int idx) {
  int id = -1;
  idx = lua_absindex(L, idx);
  lua_getiuservalue(L, 1, UV_TASKS);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) == LUA_TNUMBER) id = (int)lua_tointeger(L, -1);
  lua_pop(L, 2);
  return id;
}

/* msgs[id] = the value at the top (popped) */
static void setmsg(lua_State *L, int id) {
  lua_getiuservalue(L, 1, UV_MSGS);
  lua_insert(L, -2);
  lua_rawseti(L, -2, id);
  lua_pop(L, 1);
}

/* The task ended: it leaves the tables, its joiners are queued, and an
** error is reported. The outcome (whatever the coroutine left on its
** stack: the results, or the error) is kept for join when there is one. */
static void finished(lua_State *L, sched *S, int id, int ok, int nres) {
  lua_State *co = S->t[id].co;
  int j = S->t[id].joiners;
  /* First the tables and records, which allocate nothing: what follows
  ** allocates, and a finalizer run by the collector may spawn tasks. */
  lua_getiuservalue(L, 1, UV_TASKS);
  lua_getiuservalue(L, 1, UV_COS);
  lua_rawgeti(L, -1, id);                   /* co, anchored on our stack */
  lua_pushnil(L);
  lua_rawseti(L, -3, id);
  lua_pushvalue(L, -1);
  lua_pushnil(L);
  lua_rawset(L, -5);                        /* tasks[co] = nil */
  cleartimer(S, id);
  S->ntasks--;
  if (S->t[id].stopon) S->stopping = 1;
  S->t[id].state = T_FREE;
  S->t[id].co = NULL;
  S->t[id].next = S->freelist;
  S->freelist = id;
  while (j >= 0) {                          /* its joiners go on */
    int older = S->t[j].next;
    S->t[j].next = -1;
    cleartimer(S, j);
    enqueue(S, j, RV_TRUE);
    j = older;
  }
  if (!ok || nres > 0) {
    int i, base = lua_gettop(co) - nres;
    lua_getiuservalue(L, 1, UV_OUTCOME);
    lua_pushvalue(L, -2);
    lua_createtable(L, nres + 1, 1);
    lua_pushboolean(L, ok);
    lua_rawseti(L, -2, 1);
    luaL_checkstack(L, 2, NULL);
    for (i = 1; i <= nres; i++) {
      lua_pushvalue(co, base + i);
      lua_xmove(co, L, 1);
      lua_rawseti(L, -2, i + 1);
    }
    lua_pushinteger(L, nres + 1);
    lua_setfield(L, -2, "n");
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  if (ok) lua_settop(co, 0);  /* dead, as coroutine.status sees it */
  else {
    /* report(co, err); an error there (loop.onerror raising) waits in
    ** UV_ERROR until the batch is done (run() raises it then): unwinding
    ** now would strand the other tasks of the batch */
    lua_getiuservalue(L, 1, UV_REPORT);
    lua_pushvalue(L, -2);
    lua_pushvalue(co, -1);
    lua_xmove(co, L, 1);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
      if (lua_getiuservalue(L, 1, UV_ERROR) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_setiuservalue(L, 1, UV_ERROR);
        S->haserror = 1;
      }
      else lua_pop(L, 2);
    }
  }
  lua_pop(L, 3);
}

/* raises the error that loop.onerror raised during the last batch */
static void raisepending(lua_State *L, sched *S) {
  S->haserror = 0;
  S->running = 0;
  lua_getiuservalue(L, 1, UV_ERROR);
  lua_pushnil(L);
  lua_setiuservalue(L, 1, UV_ERROR);
  lua_error(L);
}

static void failwait(lua_State *L, sched *S, int id);
static void dowait(lua_State *L, sched *S, int id, int nres);
static void dojoin(lua_State *L, sched *S, int id, int nres);

/* What a resumed task did: ended, failed, or yielded for something. */
static void after(lua_State *L, sched *S, int id, int status, int nres) {
  lua_State *co = S->t[id].co;
  int kind;
  if (status != LUA_YIELD) {
    finished(L, S, id, status == LUA_OK, status == LUA_OK ? nres : 1);
    return;
  }
  /* a socket call linked it as a waiter itself (directwait) */
  if (nres == 0 && S->t[id].state == T_WAITING) return;
  kind = nres > 0 ? lua_type(co, -nres) : LUA_TNIL;
  /* short strings are interned: "bsdsocket.wait" is one string */
  if (kind == LUA_TSTRING && lua_tostring(co, -nres) == S->waitstr)
    kind = -1;
  if (kind == -1 && nres >= 3) {
    dowait(L, S, id, nres);
  }
  else if (kind == LUA_TLIGHTUSERDATA
           && lua_touserdata(co, -nres) == &sleepkey) {
    lua_Number d = nres >= 2 ? lua_tonumber(co, -nres + 1) : 0;
    lua_pop(co, nres);
    if (d > 0) {
      S->t[id].state = T_SLEEPING;
      settimer(L, S, id, d);
    }
    else enqueue(S, id, RV_TRUE);
  }
  else if (kind == LUA_TLIGHTUSERDATA
           && lua_touserdata(co, -nres) == &joinkey) {
    dojoin(L, S, id, nres);
  }
  else {                /* a bare coroutine.yield(): after the others */
    lua_pop(co, nres);
    enqueue(S, id, RV_NIL);
  }
}

/* Resumes task id with its queued value (or v for RV_TRUE/RV_FALSE). */
static void resume(lua_State *L, sched *S, int id, int rv) {
  task *t = &S->t[id];
  lua_State *co = t->co;
  int nargs = 1, nres, status;
  switch (rv) {
    case RV_START: nargs = t->fd; break;
    case RV_TRUE: lua_pushboolean(co, 1); break;
    case RV_FALSE: lua_pushboolean(co, 0); break;
    case RV_NIL: lua_pushnil(co); break;
    case RV_CLOSED: lua_pushlightuserdata(co, (void *)&closedkey); break;
    default:
      lua_getiuservalue(L, 1, UV_MSGS);
      lua_rawgeti(L, -1, id);
      lua_pushnil(L);
      lua_rawseti(L, -3, id);
      lua_xmove(L, co, 1);
      lua_pop(L, 1);
  }
  t->state = T_RUNNING;
  {
    bsd_shared *sh = S->sh;
    lua_State *prun = sh->running;
    void *psched = sh->sched;
    int pcur = S->current;
    sh->running = co;
    sh->sched = S;
    S->current = id;
    status = lua_resume(co, L, nargs, &nres);
    sh->running = prun;
    sh->sched = psched;
    S->current = pcur;
  }
  after(L, S, id, status, nres);
}

/* ---- waiting on descriptors ---- */

/* pollfd() of the object at 1 (under lua_pcall: it may raise) */
static int getpollfd(lua_State *L) {
  lua_Integer fd;
  int isint;
  lua_settop(L, 1);
  if (lua_getfield(L, 1, "pollfd") != LUA_TFUNCTION)
    return luaL_error(L, "object is not pollable (no pollfd method)");
  lua_insert(L, 1);
  lua_call(L, 1, 1);
  fd = lua_tointegerx(L, -1, &isint);
  if (!isint || fd < 0 || fd > 0x7FFFFFFF)
    return luaL_error(L, "pollfd() gave no descriptor");
  return 1;
}

/* The descriptor of the object at idx of co: a socket's, an integer, or
** what a pollable object's pollfd() gives (a userdata's, such as a TLS
** stream's, is kept in the weak table fdof: it does not change); -1, with
** a message pushed on L, when there is none. */
static int objfd(lua_State *L, lua_State *co, int idx, bsd_socket **sp) {
  bsd_socket *s = (bsd_socket *)lua_touserdata(co, idx);
  int t = lua_type(co, idx), isint;
  lua_Integer fd;
  *sp = NULL;
  if (t == LUA_TUSERDATA && lua_rawlen(co, idx) == sizeof(bsd_socket)
      && s->tag == BSD_SOCKET_TAG) {
    *sp = s;
    if (s->fd >= 0) return s->fd;
    lua_pushliteral(L, "attempt to use a closed socket");
    return -1;
  }
  if (t == LUA_TNUMBER) {
    fd = lua_tointegerx(co, idx, &isint);
    if (isint && fd >= 0 && fd <= 0x7FFFFFFF) return (int)fd;
    lua_pushliteral(L, "bad descriptor to wait on");
    return -1;
  }
  if (t != LUA_TTABLE && t != LUA_TUSERDATA) {
    lua_pushfstring(L, "cannot wait on a %s", lua_typename(co, t));
    return -1;
  }
  lua_pushvalue(co, idx);
  lua_xmove(co, L, 1);
  if (t == LUA_TUSERDATA) {
    lua_getiuservalue(L, 1, UV_FDOF);
    lua_pushvalue(L, -2);
    if (lua_rawget(L, -2) == LUA_TNUMBER) {
      fd = lua_tointeger(L, -1);
      lua_pop(L, 3);
      return (int)fd;
    }
    lua_pop(L, 2);
  }
  lua_pushcfunction(L, getpollfd);
  lua_pushvalue(L, -2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lua_remove(L, -2);
    return -1;
  }
  fd = lua_tointeger(L, -1);
  if (t == LUA_TUSERDATA) {
    lua_getiuservalue(L, 1, UV_FDOF);
    lua_pushvalue(L, -3);
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  return (int)fd;
}

/* the events a wait arms: epoll's edge-triggered registration is for
** both directions, once; otherwise what the waiters want, one-shot.
** POLLPRI and POLLRDHUP because a report of urgent data or of the peer's
** close tells the core that a short read no longer proves the socket
** drained (see recvinto in socket.c). */
static unsigned armevents(const sched *S, unsigned want) {
  if (S->edge) return POLLIN | POLLPRI | POLLRDHUP | POLLOUT | BSD_POLL_EDGE;
  return (want & BSD_WANT_READ ? POLLIN | POLLPRI | POLLRDHUP : 0)
         | (want & BSD_WANT_WRITE ? POLLOUT : 0) | BSD_POLL_ONESHOT;
}

/* Makes the poller's registration of fd what its waiters (and a waiter
** about to be linked: adding, a BSD_WANT_* or 0) need; 0 or an errno. */
static int registerfd(lua_State *L, sched *S, slot *sl, int fd, int fresh,
                      unsigned adding) {
  unsigned want;
  int err;
  if (S->edge) {
    if (sl->reg && !fresh) return 0;
    err = bsd_pollbe_ctl(L, S->be, BSD_POLL_ADD, fd, armevents(S, 0));
    if (err == 0) sl->reg = 1;
    return err;
  }
  want = (sl->head[0] >= 0 ? BSD_WANT_READ : 0)
         | (sl->head[1] >= 0 ? BSD_WANT_WRITE : 0) | adding;
  if (want == sl->reg && !fresh) return 0;
  err = want ? bsd_pollbe_ctl(L, S->be, BSD_POLL_ADD, fd, armevents(S, want))
             : bsd_pollbe_ctl(L, S->be, BSD_POLL_DEL, fd, 0);
  if (err == 0 || !want) sl->reg = (unsigned char)want;
  return err;
}

/* a socket's slot: fresh (to register afresh) when the socket is new to
** this scheduler or to this descriptor number */
static int sockslot(sched *S, slot *sl, bsd_socket *s, int fd) {
  int fresh = 0;
  if (s->loopfd != fd || s->loopid != S->id) {
    s->loopfd = fd;
    s->loopid = S->id;
    fresh = 1;
  }
  s->waited = 1;
  sl->who = s;
  sl->issock = 1;
  return fresh;
}

/* task id waits on fd in direction ev (0 read, 1 write), the newest */
static void linktask(sched *S, int id, int fd, int ev) {
  task *t = &S->t[id];
  slot *sl = &S->slots[fd];
  t->state = T_WAITING;
  t->fd = fd;
  t->ev = (unsigned char)ev;
  t->next = sl->head[ev];
  t->mark = 0;
  sl->head[ev] = id;
}

/* Links task id as a waiter on fd in direction ev once the poller has fd:
** 0, or the poller's errno (then the task is not linked). What may raise
** (the poller's and the heap's memory) comes first: a task is never left
** linked by an error. */
static int linkwait(lua_State *L, sched *S, int id, int fd, int ev,
                    int fresh, double deadline) {
  int err;
  if (deadline >= 0) reserveheap(L, S);
  err = registerfd(L, S, &S->slots[fd], fd, fresh,
                   ev ? BSD_WANT_WRITE : BSD_WANT_READ);
  if (err) return err;
  linktask(S, id, fd, ev);
  if (deadline >= 0) settimer(L, S, id, deadline);
  return 0;
}

/* The yield "bsdsocket.wait", obj, events, deadline: links the task as a
** waiter on the object's descriptor and makes sure the poller has it. */
static void dowait(lua_State *L, sched *S, int id, int nres) {
  lua_State *co = S->t[id].co;
  bsd_socket *s;
  /* pollfd() may run Lua code that spawns tasks (S->t moves) */
  int fd = objfd(L, co, -nres + 1, &s), ev, fresh = 0, err;
  lua_Integer want = lua_tointeger(co, -nres + 2);
  double d = nres >= 4 && lua_type(co, -nres + 3) == LUA_TNUMBER
             ? lua_tonumber(co, -nres + 3) : -1;
  slot *sl;
  if (fd < 0) {
    lua_pop(co, nres);
    failwait(L, S, id);
    return;
  }
  ev = want == BSD_WANT_WRITE ? 1 : 0;
  sl = getslot(L, S, fd);
  if (s) fresh = sockslot(S, sl, s, fd);
  else if (lua_type(co, -nres + 1) == LUA_TNUMBER) {
    fresh = 1;                    /* a bare number may name anything now */
    sl->who = NULL;
    sl->issock = 0;
  }
  else {
    const void *o = lua_topointer(co, -nres + 1);
    if (sl->who != o || sl->issock) fresh = 1;
    sl->who = o;
    sl->issock = 0;
  }
  lua_pop(co, nres);
  if ((err = linkwait(L, S, id, fd, ev, fresh, d)) != 0) {
    if (s) s->loopfd = -1;
    lua_pushfstring(L, "loop: cannot wait on fd %d: %s", fd, strerror(err));
    failwait(L, S, id);
  }
}

/* bsd_shared's wait: the running task (co) waits on socket s, linked
** here by the socket call itself instead of through yielded values. On a
** refusal the call yields them after all, and dowait reports it. */
static int directwait(void *ud, lua_State *co, bsd_socket *s, int want,
                      double deadline) {
  sched *S = (sched *)ud;
  int id = S->current, fd = s->fd, ev = want == BSD_WANT_WRITE ? 1 : 0, err;
  if (id < 0 || S->t[id].co != co || fd < 0) return -1;
  if (S->edge && deadline < 0 && s->loopfd == fd && s->loopid == S->id
      && S->slots[fd].reg) {
    /* registered already (edge-triggered): only the link */
    sockslot(S, &S->slots[fd], s, fd);
    linktask(S, id, fd, ev);
    return 0;
  }
  getslot(co, S, fd);
  err = linkwait(co, S, id, fd, ev, sockslot(S, &S->slots[fd], s, fd),
                 deadline);
  if (err) s->loopfd = -1;
  return err;
}

/* The poller refused the wait (message at the top of L): the task gets a
** failure value that loop.wait raises and the socket calls retry on. */
static void failwait(lua_State *L, sched *S, int id) {
  lua_createtable(L, 0, 1);
  lua_insert(L, -2);
  lua_setfield(L, -2, "msg");
  luaL_setmetatable(L, "bsdsocket.loop.failed");
  setmsg(L, id);
  enqueue(S, id, RV_VALUE);
}

/* the yield JOIN, task, deadline */
static void dojoin(lua_State *L, sched *S, int id, int nres) {
  lua_State *co = S->t[id].co;
  int target;
  double d = nres >= 3 && lua_type(co, -nres + 2) == LUA_TNUMBER
             ? lua_tonumber(co, -nres + 2) : -1;
  lua_pushvalue(co, -nres + 1);
  lua_xmove(co, L, 1);
  lua_pop(co, nres);
  target = taskid(L, -1);
  lua_pop(L, 1);
  if (target < 0) {               /* ended already */
    enqueue(S, id, RV_TRUE);
    return;
  }
  S->t[id].state = T_JOINING;
  S->t[id].fd = target;
  S->t[id].next = S->t[target].joiners;
  S->t[target].joiners = id;
  if (d >= 0) settimer(L, S, id, d);
}

/* Resumes the tasks waiting on fd in direction ev when the wake-up came:
** marked first, then taken off the chain one at a time, so a task resumed
** earlier may cancel, close or wake a later one (which leaves the chain
** then), and a task that waits again (unmarked, at the head) is skipped. */
static void wakeall(lua_State *L, sched *S, int fd, int ev) {
  unsigned mark;
  int id = S->slots[fd].head[ev];
  if (S->t[id].next < 0) {        /* one waiter, the common case */
    S->slots[fd].head[ev] = -1;
    S->t[id].mark = 0;
    if (S->t[id].hidx) cleartimer(S, id);
    resume(L, S, id, RV_TRUE);
    return;
  }
  mark = ++S->mark;
  if (mark == 0) mark = ++S->mark;
  for (id = S->slots[fd].head[ev]; id >= 0; id = S->t[id].next)
    S->t[id].mark = mark;
  for (;;) {
    int *link = &S->slots[fd].head[ev];
    while (*link >= 0 && S->t[*link].mark != mark) link = &S->t[*link].next;
    if ((id = *link) < 0) break;
    *link = S->t[id].next;
    S->t[id].next = -1;
    S->t[id].mark = 0;
    cleartimer(S, id);
    resume(L, S, id, RV_TRUE);
  }
}

static void dispatch(lua_State *L, sched *S, int fd, unsigned revents) {
  slot *sl;
  if (fd < 0 || fd >= S->nslots) return;
  sl = &S->slots[fd];
  if (sl->issock) {
    bsd_socket *s = (bsd_socket *)sl->who;
    if (s->fd == fd) {            /* its readiness hints (see recvinto) */
      if (revents & (POLLIN | POLLPRI | POLLHUP | POLLERR)) s->rdrained = 0;
      if (revents & (POLLPRI | POLLRDHUP | POLLHUP | POLLERR)) s->rsticky = 1;
    }
  }
  if (!S->edge) sl->reg = 0;      /* the one-shot registration fired */
  if (revents & POLLNVAL) {       /* closed behind our back */
    sl->reg = 0;
    sl->who = NULL;
    sl->issock = 0;
  }
  if ((revents & RWAKE) && sl->head[0] >= 0) wakeall(L, S, fd, 0);
  sl = &S->slots[fd];             /* tasks may have grown the array */
  if ((revents & WWAKE) && sl->head[1] >= 0) wakeall(L, S, fd, 1);
  sl = &S->slots[fd];
  if (!S->edge && (sl->head[0] >= 0 || sl->head[1] >= 0))
    registerfd(L, S, sl, fd, 0, 0);
}

/* resumes the tasks whose deadline has passed */
static void expire(lua_State *L, sched *S, double now) {
  while (S->hn > 0 && S->t[S->heap[1]].deadline <= now) {
    int id = S->heap[1];
    task *t = &S->t[id];
    cleartimer(S, id);
    switch (t->state) {
      case T_SLEEPING:
        resume(L, S, id, RV_TRUE);
        break;
      case T_JOINING:
        unchain(S, &S->t[t->fd].joiners, id);
        resume(L, S, id, RV_FALSE);
        break;
      case T_WAITING: {
        slot *sl = &S->slots[t->fd];
        unchain(S, &sl->head[t->ev], id);
        if (!S->edge) registerfd(L, S, sl, t->fd, 0, 0);
        resume(L, S, id, RV_FALSE);
        break;
      }
      default:
        break;
    }
    if (S->stopping) return;
  }
}

/* Resumes the tasks queued when the pass began (as many as there were:
** one of them may be cancelled meanwhile), not those they queue. */
static void runqueue(lua_State *L, sched *S) {
  int n = S->qlen;
  while (n-- > 0 && S->qhead >= 0) {
    int id = S->qhead;
    S->qhead = S->t[id].qnext;
    if (S->qhead < 0) S->qtail = -1;
    S->qlen--;
    resume(L, S, id, S->t[id].rv);
    if (S->stopping) break;
  }
}

/* Socket close (and collection) calls this before the descriptor goes:
** the poller forgets it, and the tasks waiting on it are queued to see
** the socket closed (queued, not resumed: the caller is in the middle of
** a task's close). */
static void closewatched(bsd_closewatch *w, int fd);

static void onclose(lua_State *L, void *ud, bsd_socket *s, int fd) {
  sched *S = (sched *)ud;
  (void)s;
  if (fd < 0 || fd >= S->nslots) return;
  /* the registration goes with the descriptor, but not while another
  ** descriptor (a dup) holds the same file open */
  if (S->slots[fd].reg) bsd_pollbe_ctl(L, S->be, BSD_POLL_DEL, fd, 0);
  closewatched(&S->watch, fd);
}

/* Any descriptor bsdsocket closes (a resolver's wake descriptor too,
** which no socket hook sees): the slot forgets its registration, so a new
** object with that number (maybe at the same address) registers afresh;
** the backend forgets it by its own watch. Waiters are queued as closed. */
static void closewatched(bsd_closewatch *w, int fd) {
  sched *S = (sched *)w;
  slot *sl;
  int ev;
  if (fd < 0 || fd >= S->nslots) return;
  sl = &S->slots[fd];
  sl->reg = 0;
  sl->who = NULL;
  sl->issock = 0;
  for (ev = 0; ev < 2; ev++) {
    int id = sl->head[ev];
    sl->head[ev] = -1;
    while (id >= 0) {
      int older = S->t[id].next;
      S->t[id].next = -1;
      if (S->t[id].state == T_WAITING) {
        cleartimer(S, id);
        enqueue(S, id, RV_CLOSED);
      }
      id = older;
    }
  }
}

/* ---- the methods (loop.lua's) ---- */

/* sched:spawn(co, ...): co runs with the arguments at the next pass */
static int l_spawn(lua_State *L) {
  sched *S = checksched(L);
  lua_State *co = lua_tothread(L, 2);
  int n = lua_gettop(L) - 2, id;
  luaL_argcheck(L, co != NULL, 2, "coroutine expected");
  id = newtask(L, S);
  luaL_checkstack(co, n + 1, "too many arguments to spawn");
  lua_xmove(L, co, n);
  S->t[id].co = co;
  S->t[id].fd = n;
  lua_getiuservalue(L, 1, UV_COS);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, id);
  lua_getiuservalue(L, 1, UV_TASKS);
  lua_pushvalue(L, 2);
  lua_pushinteger(L, id);
  lua_rawset(L, -3);
  S->ntasks++;
  enqueue(S, id, RV_START);
  return 0;
}

static int millis(double seconds) {
  double ms;
  if (seconds < 0) return -1;
  ms = ceil(seconds * 1000);  /* never wake before the deadline */
  return ms > 0x7FFFFFFF ? 0x7FFFFFFF : (int)ms;
}

/* sched:run([stopat]) -> true (no task left) or false; a second true
** when a signal asked Lua to run a hook (call again once it ran) */
static int l_run(lua_State *L) {
  sched *S = checksched(L);
  double stopat = luaL_optnumber(L, 2, -1);
  int interrupted = 0;
  lua_settop(L, 1);
  S->running = 1;
  S->stopping = 0;
  while (S->ntasks > 0) {
    double timeout = -1;
    int n, i;
    if (S->qhead >= 0) {
      runqueue(L, S);
      if (S->haserror) raisepending(L, S);
      if (S->stopping || S->ntasks == 0) break;
    }
    if (S->hn > 0 || stopat >= 0) {
      double now = bsd_monotime();
      if (S->hn > 0) expire(L, S, now);
      if (S->haserror) raisepending(L, S);
      if (S->stopping || S->ntasks == 0) break;
      if (stopat >= 0 && now >= stopat) break;
      if (S->qhead < 0) {
        if (S->hn > 0) timeout = S->t[S->heap[1]].deadline - now;
        if (stopat >= 0 && (timeout < 0 || stopat - now < timeout))
          timeout = stopat - now;
        if (timeout < 0) timeout = 0;
      }
    }
    if (S->qhead >= 0) timeout = 0;
    n = bsd_pollbe_wait(L, S->be, millis(timeout));
    if (n < 0) {
      if (errno != EINTR) {
        S->running = 0;
        return luaL_error(L, "loop: poller wait: %s", strerror(errno));
      }
      if (bsd_interrupted(L)) {
        interrupted = 1;
        break;
      }
      continue;
    }
    for (i = 0; i < n; i++) {
      int fd;
      unsigned revents = bsd_pollbe_event(S->be, i, &fd);
      dispatch(L, S, fd, revents);
    }
    if (S->haserror) raisepending(L, S);
    if (S->stopping) break;
  }
  S->running = 0;
  lua_pushboolean(L, S->ntasks == 0);
  lua_pushboolean(L, interrupted);
  return 2;
}

static int l_stop(lua_State *L) {
  checksched(L)->stopping = 1;
  return 0;
}

static int l_count(lua_State *L) {
  lua_pushinteger(L, checksched(L)->ntasks);
  return 1;
}

/* sched:stopon(co, flag): the task's end stops run() */
static int l_stopon(lua_State *L) {
  sched *S = checksched(L);
  int id = taskid(L, 2);
  if (id >= 0) S->t[id].stopon = (unsigned char)lua_toboolean(L, 3);
  return 0;
}

/* sched:cancel(co, msg) -> true if the task was waiting or queued, false
** if it has ended; "new" when it had not started (and now never will) */
static int l_cancel(lua_State *L) {
  sched *S = checksched(L);
  int id = taskid(L, 2);
  task *t;
  luaL_checktype(L, 3, LUA_TSTRING);
  if (id < 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  t = &S->t[id];
  switch (t->state) {
    case T_RUNNING:
      return luaL_error(L, "loop.cancel: a task cannot cancel itself");
    case T_QUEUED:
      if (t->rv == RV_START) {    /* spawned but never run: it ends here */
        dequeue(S, id);
        lua_settop(t->co, 0);
        finished(L, S, id, 1, 0);
        lua_pushliteral(L, "new");
        return 1;
      }
      break;
    case T_WAITING: {
      slot *sl = &S->slots[t->fd];
      unchain(S, &sl->head[t->ev], id);
      if (!S->edge) registerfd(L, S, sl, t->fd, 0, 0);
      break;
    }
    case T_JOINING:
      unchain(S, &S->t[t->fd].joiners, id);
      break;
    default:
      break;
  }
  cleartimer(S, id);
  lua_pushvalue(L, 3);
  setmsg(L, id);
  if (t->state == T_QUEUED) t->rv = RV_VALUE;
  else enqueue(S, id, RV_VALUE);
  lua_pushboolean(L, 1);
  return 1;
}

/* called when run() ends by an error (loop.lua's <close>) */
static int l_halt(lua_State *L) {
  checksched(L)->running = 0;
  return 0;
}

static int l_gc(lua_State *L) {
  sched *S = checksched(L);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &bsd_closehookkey) == LUA_TLIGHTUSERDATA
      && lua_touserdata(L, -1) == (void *)&S->hook) {
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &bsd_closehookkey);
  }
  lua_pop(L, 1);
  bsd_unwatchcloses(&S->watch);
  if (S->be) bsd_pollbe_close(L, S->be);
  S->be = NULL;
  resize(L, S->t, sizeof(task) * (size_t)S->tcap, 0);
  resize(L, S->heap, sizeof(int) * (size_t)S->hcap, 0);
  resize(L, S->slots, sizeof(slot) * (size_t)S->nslots, 0);
  S->t = NULL;
  S->heap = NULL;
  S->slots = NULL;
  S->tcap = S->hcap = S->nslots = 0;
  return 0;
}

static int l_tostring(lua_State *L) {
  sched *S = checksched(L);
  lua_pushfstring(L, "bsdsocket.scheduler %d tasks%s", S->ntasks,
                  S->running ? " (running)" : "");
  return 1;
}

/* core._scheduler(outcome, report) -> the scheduler, SLEEP, JOIN, CLOSED.
** outcome: the table where ended tasks leave what join returns; report:
** called with (co, err) when a task fails. One per Lua state: the socket
** layer's close hook points at it. */
static int l_new(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"spawn", l_spawn}, {"run", l_run}, {"stop", l_stop},
    {"count", l_count}, {"cancel", l_cancel}, {"stopon", l_stopon},
    {"halt", l_halt}, {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", l_gc}, {"__tostring", l_tostring}, {"__index", NULL},
    {NULL, NULL}
  };
  sched *S;
  unsigned id;
  int err;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  /* a new scheduler (a reloaded bsdsocket.loop) takes the close hook
  ** over, and knows no socket as registered: its id differs */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &schedidkey);
  id = (unsigned)lua_tointeger(L, -1) + 1;
  lua_pop(L, 1);
  lua_pushinteger(L, (lua_Integer)id);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &schedidkey);
  if (luaL_newmetatable(L, LOOP_MT)) {
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newmetatable(L, "bsdsocket.loop.failed");
  lua_pop(L, 1);
  S = (sched *)lua_newuserdatauv(L, sizeof(sched), NUV);
  memset(S, 0, sizeof *S);
  S->freelist = S->qhead = S->qtail = -1;
  S->current = -1;
  S->id = id;
  luaL_setmetatable(L, LOOP_MT);
  lua_insert(L, 1);               /* scheduler, outcome, report */
  lua_newtable(L);
  lua_setiuservalue(L, 1, UV_COS);
  lua_newtable(L);
  lua_setiuservalue(L, 1, UV_MSGS);
  if ((err = bsd_pollbe_open(L, &S->be)) != 0)
    return luaL_error(L, "loop: %s: %s", bsd_pollbe_name, strerror(err));
  S->edge = (bsd_pollbe_flags & BSD_POLL_EDGE) != 0;
  S->watch.fn = closewatched;
  bsd_watchcloses(L, &S->watch);
  lua_setiuservalue(L, 1, UV_REPORT);
  lua_setiuservalue(L, 1, UV_OUTCOME);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &bsd_taskskey);
  lua_setiuservalue(L, 1, UV_TASKS);
  lua_newtable(L);                /* fdof: weak keys */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setiuservalue(L, 1, UV_FDOF);
  S->waitstr = lua_pushliteral(L, "bsdsocket.wait");
  lua_setiuservalue(L, 1, UV_WAITSTR);
  S->sh = bsd_getshared(L);
  S->sh->wait = directwait;
  S->hook.fn = onclose;
  S->hook.ud = S;
  lua_pushlightuserdata(L, &S->hook);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &bsd_closehookkey);
  lua_pushlightuserdata(L, (void *)&sleepkey);
  lua_pushlightuserdata(L, (void *)&joinkey);
  lua_pushlightuserdata(L, (void *)&closedkey);
  luaL_getmetatable(L, "bsdsocket.loop.failed");
  return 5;
}

void bsd_open_loop(lua_State *L) {
  lua_pushcfunction(L, l_new);
  lua_setfield(L, -2, "_scheduler");
}
