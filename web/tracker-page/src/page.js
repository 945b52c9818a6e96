// The test page of the collector's browser test: the Snowplow JavaScript tracker, bundled from
// npm, sending to the collector named in ?collector= by POST (tracker "post") and GET (tracker
// "get"). window.trackerPage exposes what the tracker tracked and what the collector acknowledged,
// so the test can wait for the requests to settle and compare them with what landed.
import {
  addPlugin,
  enableActivityTracking,
  newTracker,
  trackPageView,
  trackSelfDescribingEvent,
  trackStructEvent,
} from '@snowplow/browser-tracker';

const params = new URLSearchParams(window.location.search);
const collector = params.get('collector');
const state = { tracked: [], acknowledged: 0, failures: [], done: false };
window.trackerPage = state;

const common = {
  appId: 'tracker-page',
  platform: 'web',
  contexts: { webPage: true },
  onRequestSuccess: (batch) => {
    state.acknowledged += batch.length;
  },
  onRequestFailure: (failure) => {
    state.failures.push({ status: failure.status, willRetry: failure.willRetry });
  },
};
newTracker('post', collector, { ...common, eventMethod: 'post' });
newTracker('get', collector, { ...common, eventMethod: 'get' });
// Every tracker's events, as tracked (with their eid), for the test to find in the dataset.
addPlugin({ plugin: { afterTrack: (payload) => state.tracked.push({ ...payload }) } });

// Page pings need a visit of minimumVisitLength seconds with activity in each heartbeat.
enableActivityTracking({ minimumVisitLength: 1, heartbeatDelay: 1 });
trackPageView({ title: 'Tracker page' });
trackStructEvent({ category: 'video', action: 'play', label: 'intro clip', property: 'hd', value: 12.5 });
trackSelfDescribingEvent({
  event: {
    schema: 'iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1',
    data: { targetUrl: 'https://www.example.com/a?b=c', elementId: 'buy' },
  },
  context: [
    { schema: 'iglu:com.snowplowanalytics.snowplow.ecommerce/page/jsonschema/1-0-0', data: { type: 'product', language: 'en-GB' } },
  ],
});

// Activity for two heartbeats, then quiet: the pings stop, and the page is done.
let moves = 0;
const activity = setInterval(() => {
  document.dispatchEvent(new MouseEvent('mousemove', { clientX: moves, clientY: moves }));
  moves += 1;
  if (moves > 24) {
    clearInterval(activity);
    setTimeout(() => {
      state.done = true;
    }, 1500);
  }
}, 100);
